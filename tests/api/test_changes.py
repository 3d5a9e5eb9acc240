"""POST /api/v1/identities/{id}/changes/: a change of a live identity's roles, its diff in the
request's `diff` field, the problem documents for bad input, and who may file one."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import approve, make_failed
from tests.support.people import STORAGE_SCOPE, SUBSCRIPTION, VAULT_SCOPE

pytestmark = pytest.mark.django_db

OTHER_VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments-2"
)


def changes_url(identity_request: IdentityRequest) -> str:
    assert identity_request.identity is not None
    return f"/api/v1/identities/{identity_request.identity.pk}/changes/"


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "add": [{"role": "Storage Blob Data Reader", "scope": STORAGE_SCOPE}],
        "remove": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}],
        "justification": "Checkout reads product images; its secrets moved to kv-payments-2.",
    }
    values.update(overrides)
    return values


def test_a_team_member_files_a_change_and_reads_its_diff(
    ready_request: IdentityRequest, teammate: Any, approver: Any, client_for: Any
) -> None:
    response = client_for(teammate).post(changes_url(ready_request), body(), format="json")

    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["kind"], created["status"]) == ("change_roles", "pending")
    assert created["identity"]["id"] == ready_request.identity_id
    assert response["Location"].endswith(f"/api/v1/identity-requests/{created['id']}/")
    diff = created["diff"]
    assert [(r["role"], r["scope"]) for r in diff["added"]] == [
        ("Storage Blob Data Reader", STORAGE_SCOPE)
    ]
    assert [(r["role"], r["scope"]) for r in diff["removed"]] == [
        ("Key Vault Secrets User", VAULT_SCOPE)
    ]
    assert diff["unchanged"] == []
    event = AuditEvent.objects.get(identity_request_id=created["id"])
    assert (event.action, event.actor) == ("identity_request.created", teammate)

    # The approver reads the same diff on the request.
    seen = client_for(approver).get(f"/api/v1/identity-requests/{created['id']}/").json()
    assert seen["diff"] == diff


def test_a_second_change_is_a_problem_naming_the_first(
    ready_request: IdentityRequest, requester: Any, teammate: Any, client_for: Any
) -> None:
    first = client_for(requester).post(changes_url(ready_request), body(), format="json").json()

    response = client_for(teammate).post(
        changes_url(ready_request),
        body(remove=[], add=[{"role": "Key Vault Secrets User", "scope": OTHER_VAULT}]),
        format="json",
    )

    assert response.status_code == 400
    problem = response.json()
    [error] = problem["errors"]
    assert (error["field"], error["rule"]) == ("identity", "change_in_progress")
    assert f"#{first['id']}" in error["message"]


def test_removing_a_role_that_is_not_there_names_the_field_and_the_role(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(
        changes_url(ready_request),
        body(add=[], remove=[{"role": "Key Vault Secrets User", "scope": OTHER_VAULT}]),
        format="json",
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["field"], error["rule"]) == ("remove[0]", "role_not_assigned")
    assert OTHER_VAULT in error["message"]


def test_a_change_without_justification_is_refused_naming_the_field(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(
        changes_url(ready_request), body(justification=""), format="json"
    )
    assert response.status_code == 400
    assert "justification" in {error["field"] for error in response.json()["errors"]}


def test_another_team_gets_404_and_anonymous_401(
    ready_request: IdentityRequest, outsider: Any, client_for: Any, api_client: Any
) -> None:
    response = client_for(outsider).post(changes_url(ready_request), body(), format="json")
    assert response.status_code == 404
    assert api_client.post(changes_url(ready_request), body(), format="json").status_code == 401
    assert not IdentityRequest.objects.filter(kind="change_roles").exists()


def test_other_kinds_carry_no_diff(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    seen = client_for(requester).get(f"/api/v1/identity-requests/{ready_request.pk}/").json()
    assert seen["diff"] is None
    assert [role["change"] for role in seen["roles"]] == [""]


def test_a_change_has_no_federation_to_verify_or_hand_over(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    created = client_for(requester).post(changes_url(ready_request), body(), format="json").json()
    base = f"/api/v1/identity-requests/{created['id']}"

    verify = client_for(requester).post(f"{base}/verify/")
    handover = client_for(requester).get(f"{base}/handover/")

    assert verify.status_code == 409
    assert "change of roles adds no federation" in verify.json()["detail"]
    assert handover.status_code == 409
    assert "hands over nothing new" in handover.json()["detail"]


def test_a_failed_change_is_cancelled_through_the_api_and_frees_the_identity(
    ready_request: IdentityRequest,
    requester: Any,
    teammate: Any,
    approver: Any,
    client_for: Any,
) -> None:
    filed = client_for(requester).post(changes_url(ready_request), body(), format="json").json()
    change = IdentityRequest.objects.get(pk=filed["id"])
    make_failed(approve(change, approver))  # nothing of the delta confirmed by Azure

    response = client_for(teammate).post(f"/api/v1/identity-requests/{change.pk}/cancel/")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    event = AuditEvent.objects.filter(identity_request=change).latest("id")
    assert (event.action, event.actor) == ("identity_request.cancelled", teammate)
    assert event.data["not_added"] == [{"role": "Storage Blob Data Reader", "scope": STORAGE_SCOPE}]
    assert event.data["not_removed"] == [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}]
    identity = ready_request.identity
    assert identity is not None
    assert dict(identity.role_assignments.values_list("scope", "status")) == {
        VAULT_SCOPE: "active",
        STORAGE_SCOPE: "removed",
    }
    again = client_for(requester).post(changes_url(ready_request), body(), format="json")
    assert again.status_code == 201, again.content


def test_a_failed_new_identity_request_cannot_be_cancelled_it_is_retried(
    failed_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(f"/api/v1/identity-requests/{failed_request.pk}/cancel/")

    assert response.status_code == 409
    assert "only a failed change of roles can be cancelled" in response.json()["detail"]
