"""POST /api/v1/identity-requests/validate/: the checks of a create, the approvals it would need
and a preview of what approval creates, with nothing filed and nothing audited."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import TokenFactory, new_request_body
from tests.support.people import SEARCH_VAULT_SCOPE, VAULT_SCOPE

pytestmark = pytest.mark.django_db

VALIDATE = "/api/v1/identity-requests/validate/"
LIST = "/api/v1/identity-requests/"


@pytest.fixture
def pipeline(
    requester: Any, cluster: Any, catalog: Any, make_token: TokenFactory, token_client: Any
) -> Any:
    return token_client(make_token(requester, ["read", "request"]))


def test_a_valid_body_gets_the_preview_and_nothing_is_filed_or_audited(pipeline: Any) -> None:
    audit_rows = AuditEvent.objects.count()  # the token's creation

    response = pipeline.post(VALIDATE, new_request_body(), format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["valid"] is True
    assert (body["errors"], body["warnings"]) == ([], [])
    assert body["approvals_needed"] == {
        "approvers": 1,
        "owner_teams": [],
        "risk": {"level": "low", "reasons": ["Resource-scoped, non-privileged roles only."]},
    }
    preview = body["preview"]
    assert preview["federated_credential"]["subject"] == "system:serviceaccount:payments:checkout"
    assert preview["role_assignments"][0]["role"] == "Key Vault Secrets User"
    assert preview["role_assignments"][0]["scope"].lower() == VAULT_SCOPE.lower()
    documents = [doc for doc in yaml.safe_load_all(preview["manifests"]) if doc]
    service_account = next(doc for doc in documents if doc["kind"] == "ServiceAccount")
    assert service_account["metadata"]["name"] == "checkout"
    assert service_account["metadata"]["namespace"] == "payments"
    assert preview["placeholders"] == ["client_id", "principal_id", "tenant_id"]
    assert IdentityRequest.objects.count() == 0
    assert AuditEvent.objects.count() == audit_rows

    # What the dry run names is what filing creates.
    filed = pipeline.post(LIST, new_request_body(), format="json")
    assert filed.status_code == 201
    identity_request = IdentityRequest.objects.get(pk=filed.json()["id"])
    approved = identity_request.roles.get()
    assert approved.scope == preview["role_assignments"][0]["scope"] or (
        approved.scope.lower() == preview["role_assignments"][0]["scope"].lower()
    )


def test_policy_findings_come_back_as_200_with_each_field_named(pipeline: Any) -> None:
    response = pipeline.post(
        VALIDATE, new_request_body(namespace="search", app_name="x"), format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["valid"] is False
    assert body["preview"] is None
    assert {(e["field"], e["rule"], e["pointer"]) for e in body["errors"]} >= {
        ("namespace", "namespace_not_owned", "#/namespace")
    }
    assert IdentityRequest.objects.count() == 0


def test_the_same_body_refused_by_a_create_is_refused_by_the_dry_run(pipeline: Any) -> None:
    bad = new_request_body(roles=[{"role": "Owner", "scope": VAULT_SCOPE}])

    dry = pipeline.post(VALIDATE, bad, format="json").json()
    create = pipeline.post(LIST, bad, format="json").json()

    assert dry["valid"] is False
    assert dry["errors"] == create["errors"]
    assert dry["warnings"] == create["warnings"]


def test_a_cross_team_scope_needs_the_owning_team(pipeline: Any) -> None:
    body = new_request_body(roles=[{"role": "Key Vault Secrets User", "scope": SEARCH_VAULT_SCOPE}])

    response = pipeline.post(VALIDATE, body, format="json").json()

    assert response["valid"] is True
    assert response["approvals_needed"]["owner_teams"] == ["search"]
    assert response["approvals_needed"]["risk"]["level"] == "high"
    assert "cross_team_scope" in {w["rule"] for w in response["warnings"]}


def test_an_exception_needs_two_approvers(pipeline: Any) -> None:
    body = new_request_body(
        is_exception=True,
        justification="Checkout needs this for the migration window, approved by the CISO.",
    )

    response = pipeline.post(VALIDATE, body, format="json").json()

    assert response["approvals_needed"]["approvers"] == 2


def test_a_malformed_body_is_a_problem_naming_the_field(pipeline: Any) -> None:
    response = pipeline.post(VALIDATE, new_request_body(roles="all of them"), format="json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert {error["field"] for error in response.json()["errors"]} == {"roles"}


def test_only_requesters_of_the_team_may_dry_run(
    outsider: Any,
    approver: Any,
    cluster: Any,
    catalog: Any,
    make_token: TokenFactory,
    token_client: Any,
    api_client: Any,
    client_for: Any,
) -> None:
    other_team = token_client(make_token(outsider, ["read", "request"]))
    audit_rows = AuditEvent.objects.count()

    assert other_team.post(VALIDATE, new_request_body(), format="json").status_code == 403
    assert client_for(approver).post(VALIDATE, new_request_body(), format="json").status_code == 403
    assert api_client.post(VALIDATE, new_request_body(), format="json").status_code == 401
    assert AuditEvent.objects.count() == audit_rows
