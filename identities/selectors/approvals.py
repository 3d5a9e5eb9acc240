"""The approval queue: what a user may approve, with the policy's risk judgement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from identities import roles
from identities.errors import PermissionDeniedError
from identities.models import (
    ApprovalDecision,
    IdentityRequest,
    RequestStatus,
)
from identities.policy import (
    PolicyResult,
    RiskSummary,
    risk_summary,
)
from identities.selectors.policy import (
    catalog_facts,
    identity_request_draft,
    identity_request_policy,
)
from identities.selectors.requests import identity_requests_visible_to

# --- approvals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalQueueItem:
    """A pending request as an approver sees it."""

    identity_request: IdentityRequest
    policy: PolicyResult
    risk: RiskSummary
    approvals: tuple[str, ...]  # usernames of approvals so far
    approvals_required: int
    can_approve: bool
    blocked_reason: str


def approval_queue(user: Any) -> list[ApprovalQueueItem]:
    """Pending requests, oldest first, each with its policy findings re-evaluated now."""
    if not roles.is_approver(user):
        raise PermissionDeniedError("Only approvers have an approval queue.")
    pending = (
        identity_requests_visible_to(user)
        .filter(status=RequestStatus.PENDING)
        .order_by("created_at", "id")
    )
    items = []
    catalog = catalog_facts()
    for identity_request in pending:
        result = identity_request_policy(identity_request, catalog=catalog)
        decided = list(identity_request.approvals.all())
        approved_by = tuple(
            a.approver.get_username() for a in decided if a.decision == ApprovalDecision.APPROVE
        )
        blocked = ""
        if identity_request.requester_id == user.pk:
            blocked = "You filed this request."
        elif any(a.approver_id == user.pk for a in decided):
            blocked = "You already approved this request; it needs another approver."
        elif result.violations:
            blocked = "It now breaks policy; reject it with a comment."
        items.append(
            ApprovalQueueItem(
                identity_request=identity_request,
                policy=result,
                risk=risk_summary(identity_request_draft(identity_request), result),
                approvals=approved_by,
                approvals_required=identity_request.approvals_required,
                can_approve=not blocked,
                blocked_reason=blocked,
            )
        )
    return items
