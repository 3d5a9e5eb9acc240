"""The guardrail policy: pure functions from a draft request (plus looked-up facts) to blocking
violations and warnings, each naming the field and the rule.

The API and the web form call `evaluate_request()` before anything is saved (the form does so
live), `identity_request_create` refuses on violations, and approval runs it again because the
world may have changed. Nothing here touches the database; `PolicyContext` carries the facts,
gathered by `identities.selectors.policy_context_for()`.
"""

from __future__ import annotations

from identities.policy.checks import EXCEPTION_JUSTIFICATION_MIN, Checks
from identities.policy.types import (
    KIND_ADD_SERVICE_ACCOUNT,
    KIND_CHANGE_ROLES,
    KIND_DECOMMISSION,
    KIND_NEW,
    KINDS,
    ClusterFacts,
    IdentityFacts,
    PolicyContext,
    PolicyResult,
    RequestDraft,
    RiskSummary,
    RoleDraft,
    RoleFacts,
    Violation,
)

__all__ = [
    "EXCEPTION_JUSTIFICATION_MIN",
    "HIGH_RISK_RULES",
    "KINDS",
    "KIND_ADD_SERVICE_ACCOUNT",
    "KIND_CHANGE_ROLES",
    "KIND_DECOMMISSION",
    "KIND_NEW",
    "ClusterFacts",
    "IdentityFacts",
    "PolicyContext",
    "PolicyResult",
    "RequestDraft",
    "RiskSummary",
    "RoleDraft",
    "RoleFacts",
    "Violation",
    "evaluate_request",
    "risk_summary",
]

# Rules whose warnings make a request high-risk in the approval queue.
HIGH_RISK_RULES = frozenset(
    {"privileged_role", "assigns_roles", "broad_scope", "scope_unowned", "cross_team_scope"}
)


def evaluate_request(draft: RequestDraft, context: PolicyContext) -> PolicyResult:
    """Check a draft against every rule: pure, the facts come in `context`
    (`identities.selectors.policy_context_for` gathers them from the database)."""
    checks = Checks(draft, context)
    checks.run()
    return checks.result


def risk_summary(draft: RequestDraft, result: PolicyResult) -> RiskSummary:
    """A one-line judgement for the approval queue, with the findings that drove it."""
    if draft.kind == KIND_DECOMMISSION or (
        draft.kind == KIND_CHANGE_ROLES and not draft.roles and draft.remove
    ):
        return RiskSummary("low", ("Removes access.",))
    high = [w.message for w in result.warnings if w.rule in HIGH_RISK_RULES]
    if high or draft.is_exception:
        reasons = high or ["Marked as a policy exception."]
        return RiskSummary("high", tuple(reasons))
    if result.warnings:
        return RiskSummary("medium", tuple(w.message for w in result.warnings))
    return RiskSummary("low", ("Resource-scoped, non-privileged roles only.",))
