"""The start page: my team's requests and identities at a glance, what waits for me, a chart."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from identities.selectors.dashboard import dashboard_for
from web.views.charts import activity_chart, chart_since
from web.views.common import page, portal_view


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
    dashboard = dashboard_for(user, since=chart_since())

    needs_action: list[ActionItem] = []
    if waiting := dashboard.awaiting_my_decision:
        needs_action.append(
            ActionItem(
                f"{waiting} request{'s wait' if waiting != 1 else ' waits'} for your decision",
                reverse("approval_queue"),
                waiting,
                "warn",
            )
        )
    if sent_back := dashboard.sent_back:
        needs_action.append(
            ActionItem(
                f"{sent_back} request{'s were' if sent_back != 1 else ' was'} sent back for "
                "changes: edit and resubmit",
                reverse("request_list") + "?status=sent_back",
                sent_back,
                "warn",
            )
        )
    if failed := dashboard.failed:
        needs_action.append(
            ActionItem(
                f"{failed} request{'s' if failed != 1 else ''} failed to provision: retry or "
                "read why",
                reverse("request_list") + "?status=failed",
                failed,
                "danger",
            )
        )
    if drifted := dashboard.drifted:
        needs_action.append(
            ActionItem(
                f"{drifted} identit{'ies' if drifted != 1 else 'y'} drifted from what was "
                "approved: repair",
                reverse("identity_list") + "?drift=drifted",
                drifted,
                "danger",
            )
        )

    return page(
        request,
        "home.html",
        {
            "teams": dashboard.teams,
            "counts": {
                "open": dashboard.open,
                "pending": dashboard.pending,
                "ready": dashboard.ready,
                "failed": dashboard.failed,
                "identities": dashboard.live_identities,
                "drifted": dashboard.drifted,
            },
            "needs_action": needs_action,
            "recent_requests": dashboard.recent_requests,
            "identities": dashboard.recent_identities,
            "chart": activity_chart(dashboard.filed_at, dashboard.time_to_ready),
        },
        section="home",
    )
