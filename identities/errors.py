"""Domain errors. The API maps them to HTTP: PolicyViolationError and DomainError 400,
PermissionDeniedError 403, NotFoundError 404, ConflictError 409."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from identities.policy import PolicyResult, Violation


class DomainError(Exception):
    """A request the domain refuses; `message` is safe to show to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PolicyViolationError(DomainError):
    """The policy engine found blocking violations; `result` also carries the warnings."""

    def __init__(self, result: PolicyResult) -> None:
        self.result = result
        lines = [f"{v.field}: {v.message}" for v in result.violations]
        super().__init__("The request breaks policy: " + "; ".join(lines))

    @property
    def violations(self) -> list[Violation]:
        return self.result.violations


class InputInvalidError(PolicyViolationError):
    """Bad fields of something other than an identity request (a token, a trust rule, a
    webhook): the same list of field, rule and message, but not the identity policy's verdict
    (the API answers it as a validation error)."""


class PermissionDeniedError(DomainError):
    """The actor may not do this (wrong role, not on the team, their own request)."""


class ConflictError(DomainError):
    """The object changed under us: wrong state, lost a race, or a uniqueness clash."""


class NotFoundError(DomainError):
    """Missing, or not visible to this user (the two are deliberately indistinguishable)."""
