"""The pipelines page: a team's OIDC trust rules and service tokens (list, create, disable,
revoke). Everyone sees their teams' (the see-everything roles all); requesters of the team and
admins change them."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.machines import (
    manageable_teams,
    service_token_create,
    service_token_get,
    service_token_revoke,
    service_tokens_visible_to,
    trust_rule_create,
    trust_rule_disable,
    trust_rule_get,
    trust_rules_visible_to,
)
from accounts.tokens import parse_duration
from identities.errors import NotFoundError, PermissionDeniedError, PolicyViolationError
from identities.models import Team
from web.forms import ServiceTokenForm, TrustRuleForm
from web.views.common import page, portal_view, signed_in_user


def _team_names(request: HttpRequest) -> list[str]:
    return list(manageable_teams(signed_in_user(request)).values_list("name", flat=True))


def _manageable_team_names(request: HttpRequest) -> list[str]:
    """The teams the form may name; a POST naming another is refused (403), not re-offered."""
    names = _team_names(request)
    if request.POST.get("team") not in names:
        raise PermissionDeniedError(
            "Only requesters of the team and admins register its rules and service tokens."
        )
    return names


def _pipelines_page(
    request: HttpRequest,
    *,
    rule_form: TrustRuleForm | None = None,
    token_form: ServiceTokenForm | None = None,
    plaintext: str = "",
    status: int = 200,
) -> HttpResponse:
    user = signed_in_user(request)
    teams = _team_names(request)
    response = page(
        request,
        "pipelines/list.html",
        {
            "rules": list(trust_rules_visible_to(user)),
            "tokens": list(service_tokens_visible_to(user)),
            "teams": teams,
            "rule_form": rule_form or TrustRuleForm(teams=teams),
            "token_form": token_form or ServiceTokenForm(teams=teams),
            "plaintext": plaintext,
        },
        status=status,
        section="pipelines",
    )
    # The page may carry a service token's only copy: never cache it.
    response["Cache-Control"] = "no-store"
    return response


def _add_violations(form: forms.Form, error: PolicyViolationError) -> None:
    for violation in error.violations:
        field = violation.field if violation.field in form.fields else None
        form.add_error(field, f"{violation.rule}: {violation.message}")


def _team(name: str) -> Team:
    team = Team.objects.filter(name=name).first()
    if team is None:
        raise NotFoundError(f"Team {name!r} was not found.")
    return team


@portal_view
@require_GET
def pipelines(request: HttpRequest) -> HttpResponse:
    return _pipelines_page(request)


@portal_view
@require_POST
def trust_rule_new(request: HttpRequest) -> HttpResponse:
    form = TrustRuleForm(request.POST, teams=_manageable_team_names(request))
    if not form.is_valid():
        return _pipelines_page(request, rule_form=form, status=400)
    values: dict[str, Any] = dict(form.cleaned_data)
    try:
        rule = trust_rule_create(
            actor=signed_in_user(request),
            team=_team(values.pop("team")),
            scopes=list(values.pop("scopes")),
            **values,
        )
    except PolicyViolationError as error:
        _add_violations(form, error)
        return _pipelines_page(request, rule_form=form, status=400)
    messages.success(
        request,
        f"Trust rule “{rule.name}” registered: matching tokens act as "
        f"{rule.service_principal.label}.",
    )
    return redirect("pipelines")


@portal_view
@require_POST
def trust_rule_disable_view(request: HttpRequest, pk: int) -> HttpResponse:
    rule = trust_rule_get(user=signed_in_user(request), pk=pk)
    trust_rule_disable(rule=rule, actor=signed_in_user(request))
    messages.success(request, f"Trust rule “{rule.name}” disabled; its tokens are refused now.")
    return redirect("pipelines")


@portal_view
@require_POST
def service_token_new(request: HttpRequest) -> HttpResponse:
    form = ServiceTokenForm(request.POST, teams=_manageable_team_names(request))
    if not form.is_valid():
        return _pipelines_page(request, token_form=form, status=400)
    lifetime = parse_duration(form.cleaned_data["lifetime"])
    try:
        token, plaintext = service_token_create(
            actor=signed_in_user(request),
            team=_team(form.cleaned_data["team"]),
            service_principal=form.cleaned_data["service_principal"],
            name=form.cleaned_data["name"],
            scopes=list(form.cleaned_data["scopes"]),
            expires_at=timezone.now() + lifetime if lifetime else None,
        )
    except PolicyViolationError as error:
        _add_violations(form, error)
        return _pipelines_page(request, token_form=form, status=400)
    messages.success(
        request, f"Service token “{token.name}” created. Copy it now: it is shown only once."
    )
    return _pipelines_page(request, plaintext=plaintext)


@portal_view
@require_POST
def service_token_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    token = service_token_get(user=signed_in_user(request), pk=pk)
    service_token_revoke(token=token, actor=signed_in_user(request))
    messages.success(request, f"Service token “{token.name}” revoked; it is refused now.")
    return redirect("pipelines")
