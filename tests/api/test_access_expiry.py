"""Time-bound access through the API: `roles[i].expires_at` and `identity_expires_at` on a new
request, `add[i].expires_at` on a change, the bounds as problem documents naming the field and
the rule, and the end dates on the request and the identity."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from identities.models import IdentityRequest, RoleAssignment
from tests.api.conftest import new_request_body
from tests.support.people import STORAGE_SCOPE, VAULT_SCOPE

pytestmark = pytest.mark.django_db

LIST = "/api/v1/identity-requests/"
EXCEPTION_WHY = "Checkout needs to manage its vault for the migration week, then loses it."


@pytest.fixture(autouse=True)
def bounded(settings: Any) -> None:
    settings.ACCESS_MAX_DAYS_PRIVILEGED = 30
    settings.ACCESS_MAX_DAYS = 0


def _errors(response: Any) -> set[tuple[str, str]]:
    problem = response.json()
    assert problem["type"].endswith(":policy-violation"), problem
    return {(e["field"], e["rule"]) for e in problem["errors"]}


def test_a_privileged_role_without_an_end_date_is_a_problem_naming_the_field(
    requester: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    body = new_request_body(
        roles=[{"role": "Contributor", "scope": VAULT_SCOPE}],
        is_exception=True,
        justification=EXCEPTION_WHY,
    )
    response = client_for(requester).post(LIST, body, format="json")
    assert response.status_code == 400
    assert ("roles[0].expires_at", "expiry_required") in _errors(response)
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert "#/roles/0/expires_at" in pointers
    too_far = (timezone.now() + timedelta(days=45)).isoformat()
    body["roles"][0]["expires_at"] = too_far
    response = client_for(requester).post(LIST, body, format="json")
    assert ("roles[0].expires_at", "expiry_beyond_maximum") in _errors(response)
    assert not IdentityRequest.objects.exists()


def test_end_dates_are_filed_and_read_back(
    requester: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    role_end = timezone.now() + timedelta(days=20)
    identity_end = timezone.now() + timedelta(days=60)
    body = new_request_body(
        roles=[
            {"role": "Contributor", "scope": VAULT_SCOPE, "expires_at": role_end.isoformat()},
            {"role": "Storage Blob Data Reader", "scope": STORAGE_SCOPE},
        ],
        is_exception=True,
        justification=EXCEPTION_WHY,
        identity_expires_at=identity_end.isoformat(),
    )
    response = client_for(requester).post(LIST, body, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    ends = {r["role"]: r["expires_at"] for r in created["roles"]}
    assert ends["Storage Blob Data Reader"] is None
    assert ends["Contributor"] is not None
    identity_request = IdentityRequest.objects.get(pk=created["id"])
    assert identity_request.roles.get(role__name="Contributor").expires_at == role_end
    assert identity_request.identity_expires_at == identity_end
    assert created["identity_expires_at"] is not None


def test_an_end_date_in_the_past_is_refused(
    requester: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    body = new_request_body(identity_expires_at=past)
    body["roles"][0]["expires_at"] = past
    response = client_for(requester).post(LIST, body, format="json")
    assert response.status_code == 400
    assert _errors(response) == {
        ("roles[0].expires_at", "expiry_in_past"),
        ("identity_expires_at", "expiry_in_past"),
    }


def test_a_change_adds_a_time_bound_role_and_the_identity_shows_its_end(
    ready_request: IdentityRequest, teammate: Any, outsider: Any, client_for: Any
) -> None:
    url = f"/api/v1/identities/{ready_request.identity_id}/changes/"
    end = timezone.now() + timedelta(days=5)
    body = {
        "add": [{"role": "Contributor", "scope": STORAGE_SCOPE}],
        "justification": EXCEPTION_WHY,
        "is_exception": True,
    }
    refused = client_for(teammate).post(url, body, format="json")
    assert refused.status_code == 400
    assert ("roles[0].expires_at", "expiry_required") in _errors(refused)
    body["add"][0]["expires_at"] = end.isoformat()
    response = client_for(teammate).post(url, body, format="json")
    assert response.status_code == 201, response.content
    added = response.json()["diff"]["added"]
    assert added[0]["role"] == "Contributor"
    assert added[0]["expires_at"] is not None
    # The identity's assignments carry their end (here: none yet), and only its team sees it.
    RoleAssignment.objects.filter(identity_id=ready_request.identity_id).update(expires_at=end)
    seen = client_for(teammate).get(f"/api/v1/identities/{ready_request.identity_id}/")
    assert seen.status_code == 200
    assert all(r["expires_at"] for r in seen.json()["role_assignments"])
    assert "expires_at" in seen.json()
    hidden = client_for(outsider).get(f"/api/v1/identities/{ready_request.identity_id}/")
    assert hidden.status_code == 404
