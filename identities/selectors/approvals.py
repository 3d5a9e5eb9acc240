"""The approval queue: what a user may approve, with the policy's risk judgement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from identities import roles, scope_lookup
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
from identities.policy.scope_context import ScopeContext
from identities.selectors.people import teams_of
from identities.selectors.policy import (
    catalog_facts,
    identity_request_draft,
    identity_request_review,
    pending_existence_ids,
)
from identities.selectors.requests import identity_requests_visible_to

# --- approvals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalQueueItem:
    """A pending request as an approver sees it."""

    identity_request: IdentityRequest
    policy: PolicyResult
    risk: RiskSummary
    approvals: tuple[str, ...]  # usernames of security's approvals so far
    approvals_required: int
    can_approve: bool
    blocked_reason: str
    # Cross-team: the teams owning a scope, which of them approved (team -> username), and the
    # owning team the signed-in user would approve for ("" = as security).
    owner_teams: tuple[str, ...] = ()
    owner_approvals: tuple[tuple[str, str], ...] = ()
    acting_for: str = ""
    waiting_because: str = ""  # why it waits for the signed-in user, in a sentence
    # Per role it adds: owner, existence in Azure, cross-team, protected, risk.
    scopes: tuple[ScopeContext, ...] = ()


RISK_LEVELS = ("low", "medium", "high")


@dataclass(frozen=True)
class ApprovalFilters:
    """Narrow the queue: by the requesting team, the cluster, the risk judged now, and how long
    the request has waited (at least `older_than`)."""

    team: str = ""
    cluster: str = ""
    risk: str = ""
    older_than: timedelta | None = None


def approval_queue(
    user: Any, filters: ApprovalFilters | None = None, *, waiting_for_me: bool = False
) -> list[ApprovalQueueItem]:
    """Pending requests, oldest first, each with its policy findings re-evaluated now.

    Approvers see every pending request. A member of a team that owns a scope of another team's
    request sees that request too, while their team's approval is outstanding: it is their
    resource, and their approval is needed beside security's. `waiting_for_me` keeps only what
    `user` can decide now: not their own requests, not ones they already decided (a four-eyes
    request they approved waits for someone else)."""
    is_approver = roles.is_approver(user)
    my_teams = set(teams_of(user).values_list("name", flat=True))
    if not is_approver and not my_teams:
        raise PermissionDeniedError("Only approvers and team members have an approval queue.")
    filters = filters or ApprovalFilters()
    pending = (
        identity_requests_visible_to(user)
        .filter(status=RequestStatus.PENDING)
        .order_by("created_at", "id")
    )
    if not is_approver:
        pending = pending.filter(owner_teams__name__in=my_teams).distinct()
    if filters.team:
        pending = pending.filter(team__name=filters.team)
    if filters.cluster:
        pending = pending.filter(cluster__name=filters.cluster)
    if filters.older_than is not None:
        pending = pending.filter(created_at__lte=timezone.now() - filters.older_than)
    if waiting_for_me:
        pending = pending.exclude(requester=user).exclude(approvals__approver=user)
    items = []
    catalog = catalog_facts()
    page = list(pending.select_related("cluster").prefetch_related("roles__role"))
    # One Resource Graph query for every scope on the page; each request's policy check then
    # answers from it instead of asking Azure again.
    with scope_lookup.looked_up_together(pending_existence_ids(page)):
        for identity_request in page:
            item = _queue_item(user, identity_request, is_approver, my_teams, catalog)
            if item is None or (filters.risk and item.risk.level != filters.risk):
                continue
            items.append(item)
    return items


def approval_item(user: Any, identity_request: IdentityRequest) -> ApprovalQueueItem | None:
    """The queue's view of one request for `user` (the request page's approve/reject form), or
    None when `user` has no decision to make on it: it is not pending, it is their own, they
    decided on it already, or they are neither an approver nor on a team whose approval it
    still needs."""
    if identity_request.status != RequestStatus.PENDING:
        return None
    if identity_request.requester_id == getattr(user, "pk", None):
        return None
    if any(a.approver_id == user.pk for a in identity_request.approvals.all()):
        return None
    is_approver = roles.is_approver(user)
    my_teams = set(teams_of(user).values_list("name", flat=True))
    if not is_approver and not my_teams:
        return None
    return _queue_item(user, identity_request, is_approver, my_teams, catalog_facts())


def _queue_item(
    user: Any,
    identity_request: IdentityRequest,
    is_approver: bool,
    my_teams: set[str],
    catalog: Any,
) -> ApprovalQueueItem | None:
    result, scopes = identity_request_review(identity_request, catalog=catalog)
    decided = list(identity_request.approvals.all())
    approvals = [a for a in decided if a.decision == ApprovalDecision.APPROVE]
    approved_by = tuple(a.approver.get_username() for a in approvals if a.on_behalf_of is None)
    owner_approvals = tuple(
        (a.on_behalf_of.name, a.approver.get_username()) for a in approvals if a.on_behalf_of
    )
    owners_done = {team for team, _ in owner_approvals}
    owed = [team for team in result.owner_teams if team not in owners_done]
    acting_for = next((team for team in owed if team in my_teams), "")
    if not is_approver and not acting_for:
        return None  # their team has approved already: nothing left for them here
    blocked = ""
    if identity_request.requester_id == user.pk:
        blocked = "You filed this request."
    elif any(a.approver_id == user.pk for a in decided):
        blocked = "You already approved this request; it needs another approver."
    elif result.violations:
        blocked = "It now breaks policy; reject it with a comment."
    if acting_for:
        why = f"Your team {acting_for} owns a scope it asks for: its approval is needed."
    elif approved_by and len(approved_by) < identity_request.approvals_required:
        why = f"Four eyes: approved by {', '.join(approved_by)}, needs a second approver."
    else:
        why = "Needs an approver."
    return ApprovalQueueItem(
        identity_request=identity_request,
        policy=result,
        risk=risk_summary(identity_request_draft(identity_request), result),
        approvals=approved_by,
        approvals_required=identity_request.approvals_required,
        can_approve=not blocked,
        blocked_reason=blocked,
        owner_teams=tuple(result.owner_teams),
        owner_approvals=owner_approvals,
        acting_for=acting_for,
        waiting_because=why,
        scopes=tuple(scopes),
    )


OWNER_APPROVALS_SHOWN_MAX = 99


def owner_approvals_waiting(user: Any) -> int:
    """Pending requests of other teams that wait for the approval of one of `user`'s teams, as
    the owner of a scope they ask for: one bounded query on every page (no count(*) over the
    table; at most OWNER_APPROVALS_SHOWN_MAX + 1 ids are read)."""
    if not getattr(user, "is_authenticated", False):
        return 0
    waiting = (
        IdentityRequest.objects.filter(status=RequestStatus.PENDING, owner_teams__in=teams_of(user))
        .exclude(
            approvals__decision=ApprovalDecision.APPROVE,
            approvals__on_behalf_of__in=teams_of(user),
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    return len(waiting[: OWNER_APPROVALS_SHOWN_MAX + 1])
