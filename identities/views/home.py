"""The start page: my team's requests and identities at a glance, what waits for me, a chart."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from identities.models import DriftState, IdentityStatus, RequestStatus
from identities.selectors import (
    AuditEventFilters,
    approval_queue,
    audit_events_visible_to,
    identities_visible_to,
    identity_requests_visible_to,
    teams_of,
)
from identities.views.charts import activity_chart, chart_since
from identities.views.common import page, portal_nav, portal_view


@dataclass(frozen=True)
class ActionItem:
    """Something waiting for the signed-in user, with where to do it."""

    text: str
    url: str
    count: int
    tone: str = "info"  # info, warn, danger


@portal_view
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    nav = portal_nav(user)
    visible_requests = identity_requests_visible_to(user)
    visible_identities = identities_visible_to(user)

    request_counts = dict(
        visible_requests.order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    live_identities = visible_identities.exclude(status=IdentityStatus.DECOMMISSIONED)
    drifted = live_identities.filter(drift_state=DriftState.DRIFTED).count()
    failed = request_counts.get(RequestStatus.FAILED, 0)
    open_count = sum(
        request_counts.get(status, 0)
        for status in (RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.PROVISIONING)
    )

    needs_action: list[ActionItem] = []
    if nav.is_approver:
        waiting = sum(1 for item in approval_queue(user) if item.can_approve)
        if waiting:
            needs_action.append(
                ActionItem(
                    f"{waiting} request{'s wait' if waiting != 1 else ' waits'} for your decision",
                    reverse("approval_queue"),
                    waiting,
                    "warn",
                )
            )
    if failed:
        needs_action.append(
            ActionItem(
                f"{failed} request{'s' if failed != 1 else ''} failed to provision: retry or "
                "read why",
                reverse("request_list") + "?status=failed",
                failed,
                "danger",
            )
        )
    if drifted:
        needs_action.append(
            ActionItem(
                f"{drifted} identit{'ies' if drifted != 1 else 'y'} drifted from what was "
                "approved: repair",
                reverse("identity_list") + "?drift=drifted",
                drifted,
                "danger",
            )
        )

    since = chart_since()
    filed_at = visible_requests.filter(created_at__gte=since).values_list("created_at", flat=True)
    ready_events = audit_events_visible_to(
        user, AuditEventFilters(action="identity_request.ready", since=since)
    ).exclude(identity_request=None)
    durations = [
        (event.created_at, (event.created_at - event.identity_request.created_at).total_seconds())
        for event in ready_events
        if event.identity_request is not None
    ]

    return page(
        request,
        "home.html",
        {
            "teams": list(teams_of(user)),
            "counts": {
                "open": open_count,
                "pending": request_counts.get(RequestStatus.PENDING, 0),
                "ready": request_counts.get(RequestStatus.READY, 0),
                "failed": failed,
                "identities": live_identities.count(),
                "drifted": drifted,
            },
            "needs_action": needs_action,
            "recent_requests": list(visible_requests[:8]),
            "identities": list(live_identities.order_by("-created_at")[:8]),
            "chart": activity_chart(filed_at, durations),
        },
        section="home",
    )
