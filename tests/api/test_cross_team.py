"""Cross-team requests and protected scopes through the API."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import IdentityRequest
from tests.api.conftest import new_request_body
from tests.support.people import SUBSCRIPTION

pytestmark = pytest.mark.django_db

LIST = "/api/v1/identity-requests/"


def test_a_protected_scope_is_a_400_naming_the_rule(
    requester: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    scope = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-identities"
    body = new_request_body(roles=[{"role": "Owner", "scope": scope}], is_exception=True)

    response = client_for(requester).post(LIST, body, format="json")

    assert response.status_code == 400, response.content
    assert ("roles[0].scope", "protected_scope") in {
        (e["field"], e["rule"]) for e in response.json()["errors"]
    }
    assert not IdentityRequest.objects.exists()


def test_a_cross_team_request_needs_the_owning_teams_approval_through_the_api(
    outsider: Any, requester: Any, approver: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    body = new_request_body(
        team="search", namespace="search", app_name="indexer", service_account="indexer"
    )
    filed = client_for(outsider).post(LIST, body, format="json")
    assert filed.status_code == 201, filed.content
    pk = filed.json()["id"]

    approved = client_for(approver).post(f"{LIST}{pk}/approve/", {}, format="json")
    assert approved.status_code == 200, approved.content
    assert approved.json()["status"] == "pending"

    # alice (payments, the owner) sees the other team's request and approves it for her team.
    assert client_for(requester).get(f"{LIST}{pk}/").status_code == 200
    owner = client_for(requester).post(f"{LIST}{pk}/approve/", {}, format="json")
    assert owner.status_code == 200, owner.content
    assert owner.json()["status"] == "approved"
