"""Webhook endpoints in the UI: register (the secret shown once), the delivery log, redeliver,
rotate the secret, switch on or off, delete. Only endpoints the user manages are ever found."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from identities import roles
from identities.errors import DomainError, NotFoundError, PolicyViolationError
from identities.models import Team, WebhookFormat
from identities.selectors import teams_of
from identities.selectors.notifications import (
    webhook_deliveries_of,
    webhook_endpoint_get,
    webhook_endpoints_visible_to,
)
from identities.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
    webhook_redeliver,
)
from web.forms import WebhookEndpointForm
from web.views.common import page, portal_view, signed_in_user

GLOBAL = "__global__"


def _team_choices(user: Any) -> list[tuple[str, str]]:
    teams = Team.objects.all() if roles.is_admin(user) else teams_of(user)
    choices = [(team.name, f"Team {team.name}") for team in teams]
    if roles.is_approver(user) or roles.is_admin(user):
        choices.append((GLOBAL, "Every team (security)"))
    return choices


def _list_page(
    request: HttpRequest, form: WebhookEndpointForm, *, secret: str = "", status: int = 200
) -> HttpResponse:
    user = signed_in_user(request)
    response = page(
        request,
        "webhooks/list.html",
        {"form": form, "endpoints": list(webhook_endpoints_visible_to(user)), "secret": secret},
        status=status,
        section="webhooks",
    )
    response["Cache-Control"] = "no-store"  # the page may carry a secret's only copy
    return response


@portal_view
def webhook_list(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    teams = _team_choices(user)
    if request.method != "POST":
        return _list_page(request, WebhookEndpointForm(teams=teams))
    form = WebhookEndpointForm(request.POST, teams=teams)
    if not form.is_valid():
        return _list_page(request, form, status=400)
    values = form.cleaned_data
    team = None if values["team"] == GLOBAL else Team.objects.get(name=values["team"])
    try:
        _, secret = webhook_endpoint_create(
            actor=user,
            team=team,
            url=values["url"],
            events=list(values["events"]),
            description=values["description"],
            format=values["format"] or WebhookFormat.STANDARD,
        )
    except PolicyViolationError as error:
        for violation in error.violations:
            form.add_error(
                violation.field if violation.field in form.fields else None, violation.message
            )
        return _list_page(request, form, status=400)
    messages.success(request, "Webhook registered. Copy its secret now: it is shown once.")
    return _list_page(request, WebhookEndpointForm(teams=teams), secret=secret)


def _detail_page(request: HttpRequest, pk: int, *, secret: str = "") -> HttpResponse:
    endpoint = webhook_endpoint_get(signed_in_user(request), pk)
    response = page(
        request,
        "webhooks/detail.html",
        {"endpoint": endpoint, "deliveries": webhook_deliveries_of(endpoint), "secret": secret},
        section="webhooks",
    )
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@portal_view
def webhook_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail_page(request, pk)


@require_POST
@portal_view
def webhook_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    endpoint = webhook_endpoint_get(user, pk)
    _, secret = webhook_endpoint_rotate_secret(actor=user, endpoint=endpoint)
    messages.success(request, "New secret below, shown once; the old one signs too for a while.")
    return _detail_page(request, pk, secret=secret)


@require_POST
@portal_view
def webhook_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    endpoint = webhook_endpoint_get(user, pk)
    webhook_endpoint_update(actor=user, endpoint=endpoint, is_active=not endpoint.is_active)
    messages.success(request, "Switched off." if endpoint.is_active else "Switched on.")
    return redirect("webhook_detail", pk=pk)


@require_POST
@portal_view
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    user = signed_in_user(request)
    webhook_endpoint_delete(actor=user, endpoint=webhook_endpoint_get(user, pk))
    messages.success(request, "Webhook deleted.")
    return redirect("webhook_list")


@require_POST
@portal_view
def webhook_redeliver_view(request: HttpRequest, pk: int, delivery_pk: int) -> HttpResponse:
    user = signed_in_user(request)
    endpoint = webhook_endpoint_get(user, pk)
    delivery = endpoint.deliveries.select_related("notification").filter(pk=delivery_pk).first()
    if delivery is None:
        raise NotFoundError(f"Delivery {delivery_pk} of webhook {pk} was not found.")
    try:
        webhook_redeliver(actor=user, notification=delivery.notification)
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Queued to be sent again.")
    return redirect("webhook_detail", pk=pk)
