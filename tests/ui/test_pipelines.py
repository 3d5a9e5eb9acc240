"""The pipelines page: a team's trust rules and service tokens, registered, listed, disabled and
revoked by the team's people; another team sees none of them."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from accounts.models import ApiToken, TrustRule
from identities.models import AuditEvent
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db

GITHUB = "https://token.actions.githubusercontent.com"


def rule_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "team": "payments",
        "service_principal": "deploy-pipeline",
        "name": "production deploys",
        "issuer": GITHUB,
        "audience": "api://workload-identity-portal",
        "subject": "repo:contoso/payments:environment:production",
        "subject_pattern": "",
        "claims": "repository=contoso/payments\nenvironment=production",
        "scopes": ["read", "request"],
    }
    form.update(overrides)
    return form


def test_a_requester_registers_a_rule_and_sees_who_it_acts_as(
    client_for: ClientFor, requester: Any
) -> None:
    client = client_for(requester)

    created = client.post(reverse("trust_rule_new"), rule_form())
    listed = client.get(reverse("pipelines"))

    assert created.status_code == 302
    rule = TrustRule.objects.get()
    assert rule.claims == {"repository": "contoso/payments", "environment": "production"}
    page = listed.content.decode()
    assert "svc:payments/deploy-pipeline" in page
    assert "production deploys" in page
    assert AuditEvent.objects.filter(action="trust_rule.created", actor=requester).exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"subject": "", "claims": ""}, "unconstrained"),
        ({"issuer": "http://ci.example.com"}, "must be an https:// URL"),
        ({"claims": "repository contoso/payments"}, "Line 1: write name=value."),
    ],
)
def test_a_bad_rule_is_shown_again_with_what_is_wrong(
    overrides: dict[str, Any], message: str, client_for: ClientFor, requester: Any
) -> None:
    response = client_for(requester).post(reverse("trust_rule_new"), rule_form(**overrides))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not TrustRule.objects.exists()


def test_a_service_token_is_shown_once_and_revoked_by_a_teammate(
    client_for: ClientFor, requester: Any, teammate: Any
) -> None:
    created = client_for(requester).post(
        reverse("service_token_new"),
        {
            "team": "payments",
            "service_principal": "nightly",
            "name": "nightly report",
            "scopes": ["read"],
            "lifetime": "30d",
        },
    )
    plaintext = created.context["plaintext"]
    assert plaintext.startswith("wip_") and plaintext in created.content.decode()
    assert created["Cache-Control"] == "no-store"
    token = ApiToken.objects.get()

    revoked = client_for(teammate).post(reverse("service_token_revoke", args=[token.pk]))

    assert revoked.status_code == 302
    token.refresh_from_db()
    assert token.revoked_by == teammate
    assert plaintext not in client_for(teammate).get(reverse("pipelines")).content.decode()


def test_another_team_sees_nothing_and_cannot_disable(
    client_for: ClientFor, requester: Any, outsider: Any
) -> None:
    client_for(requester).post(reverse("trust_rule_new"), rule_form())
    rule = TrustRule.objects.get()
    theirs = client_for(outsider)

    page = theirs.get(reverse("pipelines")).content.decode()
    disabled = theirs.post(reverse("trust_rule_disable", args=[rule.pk]))

    assert "svc:payments/deploy-pipeline" not in page
    assert disabled.status_code == 404
    rule.refresh_from_db()
    assert rule.is_active
