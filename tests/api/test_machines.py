"""A team's machines over the API: trust rules and team service tokens: validation that names
the field and the rule, visibility per team, audit rows, and a service token at work."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import authenticate

from accounts.machines import trust_rule_create
from accounts.models import ApiToken, ServicePrincipal, TrustRule
from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import new_request_body
from tests.support.oidc_issuer import AUDIENCE, LocalIssuer

pytestmark = pytest.mark.django_db

RULES = "/api/v1/trust-rules/"
SERVICE_TOKENS = "/api/v1/service-tokens/"
GITHUB = "https://token.actions.githubusercontent.com"


def rule_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "team": "payments",
        "service_principal": "deploy-pipeline",
        "name": "payments production",
        "issuer": GITHUB,
        "audience": AUDIENCE,
        "claims": {"repository": "contoso/payments", "environment": "production"},
        "scopes": ["read", "request"],
    }
    body.update(overrides)
    return body


def violations(response: Any) -> dict[str, str]:
    assert response.status_code == 400, response.content
    return {error["field"]: error["rule"] for error in response.json()["errors"]}


def test_a_requester_registers_a_rule_and_the_principal_is_created_once(
    requester: Any, client_for: Any
) -> None:
    client = client_for(requester)

    first = client.post(RULES, rule_body(), format="json")
    second = client.post(
        RULES,
        rule_body(
            name="staging", claims={"environment": "staging", "repository": "contoso/payments"}
        ),
        format="json",
    )

    assert first.status_code == 201, first.content
    assert first.json()["service_principal"] == "svc:payments/deploy-pipeline"
    assert second.status_code == 201
    principal = ServicePrincipal.objects.get()
    assert principal.user.get_username() == "svc:payments/deploy-pipeline"
    assert not principal.user.has_usable_password()
    assert authenticate(username="svc:payments/deploy-pipeline", password="") is None
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "actor_label"))
    assert actions == [
        ("service_principal.created", requester.get_username()),
        ("trust_rule.created", requester.get_username()),
        ("trust_rule.created", requester.get_username()),
    ]
    created = AuditEvent.objects.filter(action="trust_rule.created").first()
    assert created is not None
    assert created.data["claims"] == {"repository": "contoso/payments", "environment": "production"}


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"claims": {}}, "subject", "unconstrained"),
        ({"subject_pattern": "*:ref:refs/heads/main"}, "subject_pattern", "too_broad"),
        ({"subject_pattern": "repo:contoso/payments"}, "subject_pattern", "no_wildcard"),
        (
            {"subject": "repo:contoso/payments:ref:refs/heads/main", "subject_pattern": "repo:*"},
            "subject_pattern",
            "both",
        ),
        ({"issuer": "http://ci.example.com"}, "issuer", "invalid_url"),
        ({"claims": {"aud": "x"}}, "claims", "reserved_claim"),
        ({"service_principal": "Deploy_Pipeline"}, "service_principal", "invalid"),
        ({"audience": "api://with space"}, "audience", "whitespace"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field_and_the_rule(
    overrides: dict[str, Any], field: str, code: str, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(RULES, rule_body(**overrides), format="json")

    assert violations(response).get(field) == code
    assert not TrustRule.objects.exists()
    assert not AuditEvent.objects.exists()


def test_approve_cannot_be_granted_to_a_machine(requester: Any, client_for: Any) -> None:
    response = client_for(requester).post(RULES, rule_body(scopes=["approve"]), format="json")

    assert violations(response) == {"scopes[0]": "invalid_choice"}


def test_another_team_sees_none_of_your_rules_or_tokens(
    requester: Any, outsider: Any, approver: Any, client_for: Any
) -> None:
    ours = client_for(requester)
    assert ours.post(RULES, rule_body(), format="json").status_code == 201
    made = ours.post(
        SERVICE_TOKENS,
        {"team": "payments", "service_principal": "nightly", "name": "n", "scopes": ["read"]},
        format="json",
    )
    assert made.status_code == 201
    rule_id, token_id = TrustRule.objects.get().pk, made.json()["id"]

    theirs = client_for(outsider)
    assert theirs.get(RULES).json()["results"] == []
    assert theirs.get(SERVICE_TOKENS).json()["results"] == []
    assert theirs.post(f"{RULES}{rule_id}/disable/").status_code == 404
    assert theirs.post(f"{SERVICE_TOKENS}{token_id}/revoke/").status_code == 404
    assert theirs.post(RULES, rule_body(name="hijack"), format="json").status_code == 403
    # The security team sees them all, and manages none.
    assert len(client_for(approver).get(RULES).json()["results"]) == 1
    assert client_for(approver).post(f"{RULES}{rule_id}/disable/").status_code == 403
    assert TrustRule.objects.get().is_active


def test_a_service_token_files_as_the_team_and_stops_when_revoked(
    requester: Any, teammate: Any, cluster: Any, catalog: Any, client_for: Any, token_client: Any
) -> None:
    made = client_for(requester).post(
        SERVICE_TOKENS,
        {
            "team": "payments",
            "service_principal": "release",
            "name": "release",
            "scopes": ["read", "request"],
        },
        format="json",
    )
    assert made.status_code == 201, made.content
    secret = made.json()["token"]
    assert made.json()["service_principal"] == "svc:payments/release"
    token = ApiToken.objects.get()
    assert token.created_by == requester and token.user.get_username() == "svc:payments/release"
    assert secret not in str(AuditEvent.objects.values_list("data", flat=True))

    filed = token_client(secret).post(
        "/api/v1/identity-requests/", new_request_body(), format="json"
    )
    assert filed.status_code == 201, filed.content
    assert IdentityRequest.objects.get().requester == token.user

    # Another member of the team revokes it: the team owns it, not the person who made it.
    revoked = client_for(teammate).post(f"{SERVICE_TOKENS}{token.pk}/revoke/")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    assert token_client(secret).get("/api/v1/me/").status_code == 401
    assert AuditEvent.objects.filter(action="service_token.revoked", actor=teammate).count() == 1
    # The personal token list of the person who made it does not hold the team's token.
    assert client_for(requester).get("/api/v1/tokens/").json()["results"] == []


def test_a_pipeline_credential_cannot_manage_trust(
    requester: Any, team: Any, oidc_issuer: LocalIssuer, make_token: Any, token_client: Any
) -> None:
    trust_rule_create(
        actor=requester,
        team=team,
        service_principal="deploy-pipeline",
        name="main",
        issuer=oidc_issuer.url,
        audience=AUDIENCE,
        subject="repo:contoso/payments:ref:refs/heads/main",
        scopes=["read", "request"],
    )
    oidc = token_client(oidc_issuer.mint())
    personal = token_client(make_token(requester, ["read", "request"]))

    for client in (oidc, personal):
        response = client.post(RULES, rule_body(name="wider"), format="json")
        assert response.status_code == 403
    assert TrustRule.objects.count() == 1


def test_bad_token_or_rule_input_is_a_validation_problem_not_the_identity_policy(
    requester: Any, client_for: Any
) -> None:
    """Acceptance run: a token scope refusal was titled "The request breaks the identity
    policy". Fields and rules as before, under the validation problem type."""
    response = client_for(requester).post(
        "/api/v1/tokens/", {"name": "ci", "scopes": ["approve"]}, format="json"
    )
    assert violations(response) == {"scopes": "scope_not_allowed"}
    body = response.json()
    assert body["type"].endswith(":validation-error")
    assert body["title"] == "The request body or parameters are invalid."
