"""Access reviews (campaigns, progress, a team's "to review" list, attesting, evidence export)
and ownership transfers of identities. Views only call selectors and services."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from identities import roles
from identities.errors import DomainError, NotFoundError, PermissionDeniedError
from identities.models import (
    REVIEW_ITEM_STATES_OPEN,
    ReviewDecision,
    ReviewItemState,
    TransferStatus,
)
from identities.selectors import identity_get, teams_of
from identities.selectors.reviews import (
    access_review_campaign_get,
    access_review_campaigns_visible_to,
    access_review_evidence,
    access_review_item_get,
    access_review_items_to_review,
    access_review_items_visible_to,
    access_review_progress,
    evidence_csv,
    evidence_jsonl,
    ownership_transfer_get,
    ownership_transfers_visible_to,
)
from identities.services import (
    access_review_attest,
    access_review_close,
    access_review_open,
    ownership_transfer_approve,
    ownership_transfer_cancel,
    ownership_transfer_consent,
    ownership_transfer_reject,
    ownership_transfer_request,
)
from identities.services.reviews import revoke_after
from web.review_forms import AttestForm, CampaignOpenForm, CommentForm, TransferForm
from web.views.common import action_outcome, page, portal_view, signed_in_user
from web.views.review_chart import item_rows, review_chart, team_table

PAGE_SIZE = 50
# Each item row carries its own attest form: 25 a page keeps the page fast and the form usable.
ITEMS_PAGE_SIZE = 25
SHOW_CHOICES = {
    "to_review": "Waiting for you",
    "escalated": "Overdue (escalated)",
    "all": "Every item",
}


# --- campaigns ----------------------------------------------------------------------------------


@portal_view
@require_http_methods(["GET", "POST"])
def review_list(request: HttpRequest) -> HttpResponse:
    """The campaigns the user may see; security opens new ones here."""
    user = signed_in_user(request)
    form = CampaignOpenForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not roles.is_approver(user):
            raise PermissionDeniedError("Only the security team (approvers) opens access reviews.")
        if form.is_valid():
            values = form.cleaned_data
            try:
                campaign = access_review_open(
                    actor=user,
                    name=values["name"],
                    due_at=values["due_at"],
                    grace_days=values["grace_days"],
                    revoke_when_overdue=values["revoke_when_overdue"],
                    team=values["team"],
                    role=values["role"],
                    privileged_only=values["privileged_only"],
                )
            except (NotFoundError, PermissionDeniedError):
                raise
            except DomainError as error:
                field, _, message = error.message.partition(": ")
                form.add_error(field if field in form.fields else None, message or error.message)
            else:
                messages.success(
                    request,
                    f"Access review “{campaign.name}” opened with {campaign.item_count} "
                    "identities to attest.",
                )
                return redirect("review_detail", pk=campaign.pk)
        status = 400
    campaigns = access_review_campaigns_visible_to(user).order_by("-opened_at", "-id")
    page_obj = Paginator(campaigns, PAGE_SIZE).get_page(request.GET.get("page"))
    return page(
        request,
        "reviews/list.html",
        {"page_obj": page_obj, "form": form, "can_open": roles.is_approver(user)},
        status=status,
        section="reviews",
    )


@portal_view
@require_GET
def review_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Progress (chart and counts), then the items: the user's "to review" list by default."""
    user = signed_in_user(request)
    campaign = access_review_campaign_get(user=user, pk=pk)
    show = request.GET.get("show", "to_review")
    if show not in SHOW_CHOICES:
        show = "to_review"
    if show == "to_review":
        items = access_review_items_to_review(user, campaign)
    elif show == "escalated":
        items = access_review_items_visible_to(user, campaign).filter(
            escalated_at__isnull=False, state__in=REVIEW_ITEM_STATES_OPEN
        )
    else:
        items = access_review_items_visible_to(user, campaign)
    page_obj = Paginator(items.order_by("identity_name", "id"), ITEMS_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    progress = access_review_progress(user, campaign)
    chart = review_chart(progress)
    is_security = roles.is_approver(user)
    my_team_ids = set(teams_of(user).values_list("pk", flat=True))
    return page(
        request,
        "reviews/detail.html",
        {
            "campaign": campaign,
            "progress": progress,
            "chart": chart,
            "label_x": chart.label_width - 8,
            "done_x": chart.width - 52,
            "team_rows": team_table(progress),
            "page_obj": page_obj,
            "rows": item_rows(
                list(page_obj.object_list),
                campaign_open=campaign.status == "open",
                my_team_ids=my_team_ids,
                is_security=is_security,
            ),
            "show": show,
            "show_choices": SHOW_CHOICES,
            "show_label": SHOW_CHOICES[show],
            "filter_query": f"show={show}",
            "revoke_after": revoke_after(campaign),
            "is_security": is_security,
        },
        section="reviews",
    )


@portal_view
@require_POST
def review_attest(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    item = access_review_item_get(user=user, pk=pk)
    form = AttestForm(request.POST)
    fallback = reverse("review_detail", args=[item.campaign_id])
    if not form.is_valid():
        messages.error(request, "decision: choose still needed, reduce or remove.")
        return redirect(fallback)
    decision = form.cleaned_data["decision"]
    try:
        item = access_review_attest(
            item=item, attester=user, decision=decision, comment=form.cleaned_data["comment"]
        )
    except (NotFoundError, PermissionDeniedError):
        raise
    except DomainError as error:
        messages.error(request, error.message)
        return redirect(fallback)
    if decision == ReviewDecision.REDUCE:
        return redirect(_change_url(request, item.identity_id))
    if decision == ReviewDecision.REMOVE and item.follow_up_request_id:
        messages.success(
            request,
            f"{item.identity_name}: decommission request #{item.follow_up_request_id} filed; "
            "it goes through approval like any request.",
        )
        return redirect(fallback)
    if item.state == ReviewItemState.AWAITING_SECOND:
        messages.success(
            request,
            f"{item.identity_name} holds privileged access: recorded; a second member of the "
            "team (or security) must also attest it.",
        )
    else:
        messages.success(
            request, f"{item.identity_name}: attested “{item.get_decision_display()}”."
        )
    return redirect(fallback)


def _change_url(request: HttpRequest, identity_id: int) -> str:
    """Where a "reduce" continues: the identity's change form, prefilled from its roles."""
    messages.success(
        request,
        "Recorded “reduce”. Remove the roles the app no longer needs below and file the change; "
        "it is approved and written to Azure like any change of roles.",
    )
    return reverse("identity_change", args=[identity_id])


@portal_view
@require_POST
def review_close(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    campaign = access_review_campaign_get(user=user, pk=pk)
    return action_outcome(
        request,
        lambda: access_review_close(campaign=campaign, actor=user),
        done=f"Access review “{campaign.name}” closed; no more attestations are taken.",
        fallback=reverse("review_detail", args=[pk]),
    )


@portal_view
@require_GET
def review_evidence(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The evidence as CSV (`?format=csv`) or JSON Lines (default)."""
    user = signed_in_user(request)
    campaign = access_review_campaign_get(user=user, pk=pk)
    fmt = "csv" if request.GET.get("format") == "csv" else "jsonl"
    records = access_review_evidence(user, campaign)
    response = StreamingHttpResponse(
        evidence_csv(records) if fmt == "csv" else evidence_jsonl(records),
        content_type=("text/csv" if fmt == "csv" else "application/jsonl") + "; charset=utf-8",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="access-review-{campaign.pk}-evidence.{fmt}"'
    )
    return response


# --- ownership transfers ------------------------------------------------------------------------


@portal_view
@require_GET
def transfer_list(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    transfers = ownership_transfers_visible_to(user).order_by("-created_at", "-id")
    page_obj = Paginator(transfers, PAGE_SIZE).get_page(request.GET.get("page"))
    return page(
        request,
        "transfers/list.html",
        {
            "page_obj": page_obj,
            "my_team_ids": set(teams_of(user).values_list("pk", flat=True)),
            "is_security": roles.is_approver(user),
            "statuses": TransferStatus,
        },
        section="transfers",
    )


@portal_view
@require_POST
def identity_transfer(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    identity = identity_get(user=user, pk=pk)
    form = TransferForm(request.POST, prefix="transfer")
    if not form.is_valid():
        messages.error(request, "to_team and justification: choose the receiving team and say why.")
        return redirect("identity_detail", pk=pk)
    return action_outcome(
        request,
        lambda: ownership_transfer_request(
            requester=user,
            identity=identity,
            to_team=form.cleaned_data["to_team"],
            justification=form.cleaned_data["justification"],
        ),
        done=f"Transfer of {identity.name} to {form.cleaned_data['to_team'].name} asked for: "
        "that team consents, then security approves.",
        fallback=reverse("transfer_list"),
    )


def _transfer_action(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    user = signed_in_user(request)
    transfer = ownership_transfer_get(user=user, pk=pk)
    comment = CommentForm(request.POST)
    text = comment.cleaned_data["comment"] if comment.is_valid() else ""
    actions = {
        "consent": (
            lambda: ownership_transfer_consent(transfer=transfer, actor=user),
            "Consent recorded; security approves next.",
        ),
        "approve": (
            lambda: ownership_transfer_approve(transfer=transfer, approver=user, comment=text),
            f"{transfer.identity.name} now belongs to {transfer.to_team.name}; its Azure tags "
            "are being updated.",
        ),
        "reject": (
            lambda: ownership_transfer_reject(transfer=transfer, actor=user, comment=text),
            "Transfer rejected.",
        ),
        "cancel": (
            lambda: ownership_transfer_cancel(transfer=transfer, actor=user),
            "Transfer cancelled.",
        ),
    }
    action, done = actions[verb]
    return action_outcome(request, action, done=done, fallback=reverse("transfer_list"))


@portal_view
@require_POST
def transfer_consent(request: HttpRequest, pk: int) -> HttpResponse:
    return _transfer_action(request, pk, "consent")


@portal_view
@require_POST
def transfer_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _transfer_action(request, pk, "approve")


@portal_view
@require_POST
def transfer_reject(request: HttpRequest, pk: int) -> HttpResponse:
    return _transfer_action(request, pk, "reject")


@portal_view
@require_POST
def transfer_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _transfer_action(request, pk, "cancel")
