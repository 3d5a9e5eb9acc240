"""API tokens for pipelines: create (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.tokens import (
    SCOPE_APPROVE,
    SCOPE_REQUEST,
    SCOPES,
    api_token_create,
    api_token_get,
    api_token_revoke,
    api_tokens_of,
    parse_duration,
)
from identities.errors import PolicyViolationError
from web.forms import ApiTokenForm
from web.views.common import page, portal_nav, portal_view, signed_in_user

SCOPE_DESCRIPTIONS = {
    "read": "read: see requests, identities and the audit trail you can see in the UI",
    "request": "request: file and cancel identity requests for your teams",
    "approve": "approve: approve or reject requests",
}


def _scope_choices(user: Any) -> list[tuple[str, str]]:
    """The scopes worth offering: the service refuses scopes the user's roles cannot use."""

    nav = portal_nav(user)
    usable = {scope for scope in SCOPES if scope not in {SCOPE_REQUEST, SCOPE_APPROVE}}
    if nav.is_requester:
        usable.add(SCOPE_REQUEST)
    if nav.is_approver:
        usable.add(SCOPE_APPROVE)
    return [(scope, SCOPE_DESCRIPTIONS.get(scope, scope)) for scope in SCOPES if scope in usable]


def _tokens_page(
    request: HttpRequest, form: ApiTokenForm, *, plaintext: str = "", status: int = 200
) -> HttpResponse:

    response = page(
        request,
        "tokens/list.html",
        {
            "form": form,
            "tokens": list(api_tokens_of(signed_in_user(request))),
            "plaintext": plaintext,
        },
        status=status,
        section="tokens",
    )
    # The page may carry a token's only copy: never cache it.
    response["Cache-Control"] = "no-store"
    return response


@portal_view
def api_tokens(request: HttpRequest) -> HttpResponse:

    scopes = _scope_choices(request.user)
    if request.method != "POST":
        return _tokens_page(request, ApiTokenForm(scopes=scopes))
    form = ApiTokenForm(request.POST, scopes=scopes)
    if not form.is_valid():
        return _tokens_page(request, form, status=400)
    lifetime = parse_duration(form.cleaned_data["lifetime"])
    try:
        token, plaintext = api_token_create(
            user=signed_in_user(request),
            name=form.cleaned_data["name"],
            scopes=list(form.cleaned_data["scopes"]),
            expires_at=timezone.now() + lifetime if lifetime else None,
        )
    except PolicyViolationError as error:
        for violation in error.violations:
            field = violation.field if violation.field in form.fields else None
            form.add_error(field, f"{violation.rule}: {violation.message}")
        return _tokens_page(request, form, status=400)
    messages.success(request, f"Token “{token.name}” created. Copy it now: it is shown only once.")
    return _tokens_page(request, ApiTokenForm(scopes=scopes), plaintext=plaintext)


@portal_view
@require_POST
def api_token_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:

    token = api_token_get(user=signed_in_user(request), pk=pk)
    api_token_revoke(token=token, actor=signed_in_user(request))
    messages.success(request, f"Token “{token.name}” revoked; pipelines using it are refused now.")
    return redirect("api_tokens")
