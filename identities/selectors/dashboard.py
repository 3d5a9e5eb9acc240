"""The start page's figures for one user: counts by status, what waits for them, recent work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count

from identities import roles
from identities.audit.actions import AuditAction
from identities.audit.selectors import AuditEventFilters, audit_events_visible_to
from identities.models import (
    REQUEST_STATUSES_OPEN,
    DriftState,
    Identity,
    IdentityRequest,
    IdentityStatus,
    RequestStatus,
    Team,
)
from identities.selectors.approvals import approval_queue, owner_approvals_waiting
from identities.selectors.people import teams_of
from identities.selectors.requests import identities_visible_to, identity_requests_visible_to


@dataclass(frozen=True)
class Dashboard:
    """What the start page shows; every figure is within what `user` may see."""

    teams: list[Team]
    open: int
    pending: int
    ready: int
    failed: int
    sent_back: int  # visible requests sent back for changes, waiting for their requester
    live_identities: int
    drifted: int
    awaiting_my_decision: int
    recent_requests: list[IdentityRequest]
    recent_identities: list[Identity]
    filed_at: list[datetime]
    # (when it became ready, seconds from filing to ready) for each request made ready since.
    time_to_ready: list[tuple[datetime, float]]


def dashboard_for(user: Any, *, since: datetime) -> Dashboard:
    visible_requests = identity_requests_visible_to(user)
    counts = dict(
        visible_requests.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    live = identities_visible_to(user).exclude(status=IdentityStatus.DECOMMISSIONED)
    waiting = (
        sum(1 for item in approval_queue(user) if item.can_approve)
        if roles.is_approver(user) or owner_approvals_waiting(user)
        else 0
    )
    ready_events = audit_events_visible_to(
        user, AuditEventFilters(action=AuditAction.REQUEST_READY, since=since)
    ).exclude(identity_request=None)
    return Dashboard(
        teams=list(teams_of(user)),
        open=sum(counts.get(status, 0) for status in REQUEST_STATUSES_OPEN),
        pending=counts.get(RequestStatus.PENDING, 0),
        ready=counts.get(RequestStatus.READY, 0),
        failed=counts.get(RequestStatus.FAILED, 0),
        sent_back=counts.get(RequestStatus.SENT_BACK, 0),
        live_identities=live.count(),
        drifted=live.filter(drift_state=DriftState.DRIFTED).count(),
        awaiting_my_decision=waiting,
        recent_requests=list(visible_requests[:8]),
        recent_identities=list(live.order_by("-created_at")[:8]),
        filed_at=list(
            visible_requests.filter(created_at__gte=since).values_list("created_at", flat=True)
        ),
        time_to_ready=[
            (
                event.created_at,
                (event.created_at - event.identity_request.created_at).total_seconds(),
            )
            for event in ready_events
            if event.identity_request is not None
        ],
    )
