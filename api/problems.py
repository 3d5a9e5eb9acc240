"""Errors as RFC 9457 problem details, mapped centrally from domain errors and DRF exceptions.

Every error body is `application/problem+json`: `type` (a tag URI naming the problem), `title`,
`status`, `detail`, `instance` (the request path), and for invalid input `errors`, one entry per
offending field (`field` as the policy engine names it, e.g. `roles[0].scope`, its JSON pointer,
the `rule` and a `message`). Policy violations also carry the non-blocking `warnings`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import set_rollback

from identities.errors import (
    ConflictError,
    DomainError,
    InputInvalidError,
    NotFoundError,
    PermissionDeniedError,
    PolicyViolationError,
)
from identities.policy import Violation

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Non-resolvable but unique and stable identifiers (RFC 9457 §3.1.1 allows tag URIs, RFC 4151).
TYPE_PREFIX = "tag:workload-identity-portal,2026:problem:"

# slug -> (status, title); the README lists them.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "validation-error": (400, "The request body or parameters are invalid."),
    "policy-violation": (400, "The request breaks the identity policy."),
    "invalid-request": (400, "The request cannot be carried out."),
    "body-too-deep": (400, "The request body is nested too deeply."),
    "unauthenticated": (401, "Authentication is required."),
    "forbidden": (403, "You may not do this."),
    "not-found": (404, "Not found."),
    "method-not-allowed": (405, "Method not allowed."),
    "not-acceptable": (406, "The requested representation is not available."),
    "conflict": (409, "The object is not in a state that allows this."),
    "idempotency-key-in-use": (409, "A request with this Idempotency-Key is still running."),
    "payload-too-large": (413, "The request body is too large."),
    "unsupported-media-type": (415, "Unsupported media type."),
    "idempotency-key-reused": (422, "This Idempotency-Key was used with a different request."),
    "throttled": (429, "Too many requests."),
    "server-error": (500, "Internal server error."),
    "service-unavailable": (503, "The service is temporarily unavailable."),
}
# The database is unreachable or the connection broke mid-request: a 503 with Retry-After rather
# than a 500, since nothing is wrong with the request itself. The services write in one
# transaction each, so a broken connection leaves nothing half-written.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER_SECONDS = 5
_SLUG_BY_DRF_CLASS: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.ValidationError, "validation-error"),
    (exceptions.ParseError, "validation-error"),
    (exceptions.NotAuthenticated, "unauthenticated"),
    (exceptions.AuthenticationFailed, "unauthenticated"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not-found"),
    (exceptions.MethodNotAllowed, "method-not-allowed"),
    (exceptions.NotAcceptable, "not-acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported-media-type"),
    (exceptions.Throttled, "throttled"),
]


class ProblemResponse(Response):
    """A Response whose body is a problem document; the API's views render it as
    application/problem+json whatever representation the client asked for."""


class ProblemError(exceptions.APIException):
    """An API-level problem of one of the PROBLEM_TYPES (idempotency, content negotiation)."""

    def __init__(self, slug: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        self.slug = slug
        self.status_code = PROBLEM_TYPES[slug][0]
        self.headers = headers or {}
        super().__init__(detail)


def problem_response(
    slug: str,
    detail: str,
    *,
    instance: str = "",
    errors: list[dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    status: int | None = None,
) -> ProblemResponse:
    default_status, title = PROBLEM_TYPES[slug]
    status = status or default_status
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    body.update(extra or {})
    return ProblemResponse(body, status=status, headers=headers)


def json_pointer(field: str) -> str:
    """`roles[1].scope` → `#/roles/1/scope` (RFC 6901, as RFC 9457's examples use)."""
    if not field:
        return "#"
    parts = re.split(r"\.|\[(\d+)\]", field)
    tokens = [p.replace("~", "~0").replace("/", "~1") for p in parts if p]
    return "#/" + "/".join(tokens)


def _violation_entry(violation: Violation) -> dict[str, str]:
    return {
        "field": violation.field,
        "pointer": json_pointer(violation.field),
        "rule": violation.rule,
        "message": violation.message,
    }


def _flatten(detail: Any, path: str = "") -> Iterator[tuple[str, str, str]]:
    """DRF's nested error detail as (field path, code, message), in the policy's field syntax."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # a ListSerializer's errors, keyed by index
                yield from _flatten(value, f"{path}[{key}]")
                continue
            name = "" if key in {"non_field_errors", "__all__"} else str(key)
            child = f"{path}.{name}" if path and name else (name or path)
            yield from _flatten(value, child)
    elif isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            for item in detail:
                yield path, getattr(item, "code", "invalid") or "invalid", str(item)
        else:
            for index, item in enumerate(detail):
                if item:  # an empty dict is an element without errors
                    yield from _flatten(item, f"{path}[{index}]")
    else:
        yield path, getattr(detail, "code", "invalid") or "invalid", str(detail)


def finding_entries(findings: list[Violation]) -> list[dict[str, str]]:
    """Policy findings in the problem document's `errors` shape (field, pointer, rule, message)."""
    return [_violation_entry(finding) for finding in findings]


def validation_errors(detail: Any) -> list[dict[str, str]]:
    return [
        {"field": field, "pointer": json_pointer(field), "rule": code, "message": message}
        for field, code, message in _flatten(detail)
    ]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: every error becomes a problem document."""
    request = context.get("request")
    instance = request.path if request is not None else ""
    set_rollback()
    if isinstance(exc, InputInvalidError):
        return problem_response(
            "validation-error",
            "Fix the fields listed in errors and submit again.",
            instance=instance,
            errors=[_violation_entry(v) for v in exc.violations],
        )
    if isinstance(exc, PolicyViolationError):
        return policy_violation_problem(exc, instance=instance)
    for domain_class, slug in (
        (PermissionDeniedError, "forbidden"),
        (NotFoundError, "not-found"),
        (ConflictError, "conflict"),
        (DomainError, "invalid-request"),
    ):
        if isinstance(exc, domain_class):
            return problem_response(slug, exc.message, instance=instance)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, ProblemError):
        return problem_response(exc.slug, str(exc.detail), instance=instance, headers=exc.headers)
    if isinstance(exc, exceptions.APIException):
        return _drf_problem(exc, instance)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return database_unavailable_problem(exc, instance)
    logger.exception("Unhandled error in %s", instance or "the API", exc_info=exc)
    return problem_response(
        "server-error",
        "Something went wrong on our side; the error was logged. Retrying with the same "
        "Idempotency-Key is safe.",
        instance=instance,
    )


def policy_violation_problem(
    exc: PolicyViolationError, *, instance: str, extra: dict[str, Any] | None = None
) -> ProblemResponse:
    """The 400 of a policy refusal: every violation under `errors`, the warnings beside them,
    and `extra` members (e.g. `existing`, naming what an already_federated refusal met)."""
    return problem_response(
        "policy-violation",
        "Fix the fields listed in errors and submit again.",
        instance=instance,
        errors=[_violation_entry(v) for v in exc.violations],
        extra={"warnings": [_violation_entry(w) for w in exc.result.warnings], **(extra or {})},
    )


def database_unavailable_problem(exc: Exception, instance: str) -> ProblemResponse:
    logger.warning("database unavailable in %s: %s", instance or "the API", exc)
    return problem_response(
        "service-unavailable",
        "The portal's database is unavailable right now. Send the request again in a few "
        "seconds (with the same Idempotency-Key, if you sent one).",
        instance=instance,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _drf_problem(exc: exceptions.APIException, instance: str) -> ProblemResponse:
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = f"{int(wait) + (0 if float(wait).is_integer() else 1)}"
    slug = next((s for cls, s in _SLUG_BY_DRF_CLASS if isinstance(exc, cls)), "invalid-request")
    if isinstance(exc, exceptions.ValidationError):
        return problem_response(
            slug,
            "Fix the fields listed in errors and submit again.",
            instance=instance,
            errors=validation_errors(exc.detail),
            headers=headers,
        )
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 403 and slug == "invalid-request":
        slug = "forbidden"
    return problem_response(
        slug, str(detail), instance=instance, headers=headers, status=exc.status_code
    )


# --- for the schema -------------------------------------------------------------------------


class ProblemFieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="The field as the policy names it: roles[0].scope.")
    pointer = serializers.CharField(help_text="JSON pointer into the request body: #/roles/0/scope")
    rule = serializers.CharField(help_text="Machine-readable rule, e.g. namespace_not_owned.")
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField(help_text=f"{TYPE_PREFIX}<slug>; see the README for the list.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(required=False, help_text="The request path.")
    # A declared field, not Serializer.errors: the metaclass keeps the two apart.
    errors = ProblemFieldErrorSerializer(many=True, required=False)  # type: ignore[assignment]
    warnings = ProblemFieldErrorSerializer(
        many=True, required=False, help_text="Policy warnings (non-blocking)."
    )
