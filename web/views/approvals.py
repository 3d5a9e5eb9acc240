"""The approval queue: pending requests with their risk, policy findings and what approval would
grant; approve, send back for changes, or reject, with a comment."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from identities.selectors import ApprovalFilters, approval_queue, identity_request_get
from identities.services import (
    identity_request_approve,
    identity_request_reject,
    identity_request_send_back,
)
from web.forms import ApprovalFilterForm, DecisionForm
from web.views.common import action_outcome, page, portal_view, signed_in_user
from web.views.presenters import grant_diff


@portal_view
@require_GET
def approval_queue_page(request: HttpRequest) -> HttpResponse:
    """All pending requests, or "waiting for me" (`?show=mine`), narrowed by the filters. An
    invalid filter is named on the form and not applied."""
    form = ApprovalFilterForm(request.GET)
    filters = ApprovalFilters()
    if form.is_valid():
        filters = ApprovalFilters(
            team=form.cleaned_data["team"],
            cluster=form.cleaned_data["cluster"],
            risk=form.cleaned_data["risk"],
            older_than=form.older_than(),
        )
    # PermissionDeniedError (403) for users who are neither approvers nor on a team.
    items = approval_queue(request.user, filters, waiting_for_me=form.waiting_for_me)
    return page(
        request,
        "approvals/queue.html",
        {
            "items": [(item, grant_diff(item.identity_request)) for item in items],
            "decision_form": DecisionForm(),
            "filter_form": form,
            "waiting_for_me": form.waiting_for_me,
            "filtered": any(request.GET.get(name) for name in ("team", "cluster", "risk", "age")),
        },
        section="approvals",
    )


@portal_view
@require_POST
def request_approve(request: HttpRequest, pk: int) -> HttpResponse:
    identity_request = identity_request_get(user=signed_in_user(request), pk=pk)
    form = DecisionForm(request.POST)
    valid = form.is_valid()
    comment = form.cleaned_data["comment"] if valid else ""
    revision = form.cleaned_data["revision"] if valid else None
    return action_outcome(
        request,
        lambda: identity_request_approve(
            identity_request=identity_request,
            approver=signed_in_user(request),
            comment=comment,
            revision=revision,
        ),
        done=f"Approval of request #{pk} recorded.",
        fallback=reverse("approval_queue"),
    )


@portal_view
@require_POST
def request_reject(request: HttpRequest, pk: int) -> HttpResponse:
    identity_request = identity_request_get(user=signed_in_user(request), pk=pk)
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    return action_outcome(
        request,
        lambda: identity_request_reject(
            identity_request=identity_request, approver=signed_in_user(request), comment=comment
        ),
        done=f"Request #{pk} rejected; the requester sees your comment.",
        fallback=reverse("approval_queue"),
    )


@portal_view
@require_POST
def request_send_back(request: HttpRequest, pk: int) -> HttpResponse:
    identity_request = identity_request_get(user=signed_in_user(request), pk=pk)
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    return action_outcome(
        request,
        lambda: identity_request_send_back(
            identity_request=identity_request, approver=signed_in_user(request), comment=comment
        ),
        done=f"Request #{pk} sent back; the requester edits it and resubmits it.",
        fallback=reverse("approval_queue"),
    )
