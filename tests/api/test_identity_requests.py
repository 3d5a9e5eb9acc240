"""The identity-request endpoints as pipelines use them: the contract's shapes, problem details
naming each field, visibility without existence leaks, and the audit rows of each action."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import (
    CLIENT_ID,
    PRINCIPAL_ID,
    FileRequest,
    TokenFactory,
    audit_count,
    new_request_body,
    search_overrides,
)
from tests.support.people import TENANT

pytestmark = pytest.mark.django_db

LIST = "/api/v1/identity-requests/"


def detail(pk: int, action: str = "") -> str:
    return f"/api/v1/identity-requests/{pk}/{action + '/' if action else ''}"


def test_a_pipeline_files_a_request_and_gets_its_id_status_and_location(
    requester: Any, cluster: Any, catalog: Any, make_token: TokenFactory, token_client: Any
) -> None:
    client = token_client(make_token(requester, ["read", "request"]))

    response = client.post(LIST, new_request_body(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["team"] == "payments"
    assert body["roles"][0]["role"] == "Key Vault Secrets User"
    assert body["identity"] is None
    assert response["Location"].endswith(detail(body["id"]))
    identity_request = IdentityRequest.objects.get(pk=body["id"])
    assert identity_request.requester == requester
    event = AuditEvent.objects.get(identity_request=identity_request)
    assert (event.action, event.actor) == ("identity_request.created", requester)


def test_a_role_may_be_named_by_its_definition_guid(
    requester: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    guid = catalog["Key Vault Secrets User"].role_definition_guid
    body = new_request_body(
        roles=[{"role": guid, "scope": new_request_body()["roles"][0]["scope"]}]
    )

    response = client_for(requester).post(LIST, body, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["roles"][0]["role_definition_guid"] == guid


def test_policy_violations_are_problem_details_naming_each_field(
    requester: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    body = new_request_body(
        namespace="search",
        roles=[{"role": "No Such Role", "scope": "/subscriptions/nope"}],
    )

    response = client_for(requester).post(LIST, body, format="json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith(":policy-violation")
    assert problem["status"] == 400
    assert problem["instance"] == LIST
    fields = {(e["field"], e["rule"]) for e in problem["errors"]}
    assert ("namespace", "namespace_not_owned") in fields
    assert ("roles[0].role", "unknown_role") in fields
    pointers = {e["pointer"] for e in problem["errors"]}
    assert "#/roles/0/role" in pointers
    assert not IdentityRequest.objects.exists()


def test_malformed_input_is_a_validation_problem_with_field_paths(
    requester: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    body = new_request_body(roles=[{"role": "Key Vault Secrets User"}], tags="not-a-map")
    del body["cluster"]

    response = client_for(requester).post(LIST, body, format="json")

    assert response.status_code == 400
    problem = response.json()
    assert problem["type"].endswith(":validation-error")
    fields = {(e["field"], e["rule"]) for e in problem["errors"]}
    assert ("cluster", "required") in fields
    assert ("roles[0].scope", "required") in fields
    assert "tags" in {field for field, _ in fields}


def test_a_body_that_is_not_json_is_a_problem_not_a_crash(requester: Any, client_for: Any) -> None:
    response = client_for(requester).generic(
        "POST", LIST, "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_requesters_cannot_file_for_a_team_they_are_not_on(
    outsider: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    response = client_for(outsider).post(LIST, new_request_body(), format="json")
    assert response.status_code == 403
    assert response.json()["type"].endswith(":forbidden")


def test_another_teams_identity_is_unknown_to_add_service_account(
    outsider: Any, team: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    from tests.support.people import IdentityFactory

    theirs = IdentityFactory(team=team, cluster=cluster, name="secret-name-of-payments")
    body = new_request_body(
        kind="add_service_account", identity=theirs.pk, team="search", namespace="search"
    )

    response = client_for(outsider).post(LIST, body, format="json")

    assert response.status_code == 400
    assert "secret-name-of-payments" not in response.content.decode()
    assert response.json()["errors"][0]["rule"] == "unknown_identity"


def test_a_requester_lists_only_their_teams_requests(
    file_request: FileRequest, outsider: Any, client_for: Any
) -> None:
    ours = file_request()
    file_request(as_user=outsider, **search_overrides())

    response = client_for(outsider).get(LIST)

    assert response.status_code == 200
    ids = [row["id"] for row in response.json()["results"]]
    assert ours.pk not in ids
    assert len(ids) == 1


def test_the_list_filters_by_status_team_and_cluster(
    file_request: FileRequest, outsider: Any, approver: Any, client_for: Any
) -> None:
    ours = file_request()
    file_request(as_user=outsider, **search_overrides())
    client = client_for(approver)

    by_team = client.get(LIST, {"team": "payments"}).json()["results"]
    by_status = client.get(LIST, {"status": ["pending", "failed"], "cluster": "aks-test"})
    nothing = client.get(LIST, {"status": "ready"}).json()["results"]

    assert [row["id"] for row in by_team] == [ours.pk]
    assert len(by_status.json()["results"]) == 2
    assert nothing == []


def test_an_unknown_filter_value_is_a_validation_problem(
    approver: Any, client_for: Any, db: None
) -> None:
    response = client_for(approver).get(LIST, {"status": "sleeping"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "status"


def test_the_list_pages_with_a_cursor(
    file_request: FileRequest, approver: Any, client_for: Any
) -> None:
    first = file_request(app_name="one", service_account="one")
    second = file_request(app_name="two", service_account="two")
    client = client_for(approver)

    page = client.get(LIST, {"page_size": 1}).json()
    following = client.get(page["next"]).json()

    assert [row["id"] for row in page["results"]] == [second.pk]
    assert [row["id"] for row in following["results"]] == [first.pk]
    assert following["next"] is None
    oldest_first = client.get(LIST, {"ordering": "created_at"}).json()["results"]
    assert [row["id"] for row in oldest_first] == [first.pk, second.pk]


def test_a_garbled_cursor_is_a_400_problem(approver: Any, client_for: Any, db: None) -> None:
    response = client_for(approver).get(LIST, {"cursor": "garbage"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["rule"] == "invalid_cursor"


def test_unknown_and_invisible_requests_are_the_same_404(
    pending_request: IdentityRequest, outsider: Any, client_for: Any
) -> None:
    client = client_for(outsider)
    invisible = client.get(detail(pending_request.pk))
    missing = client.get(detail(pending_request.pk + 1000))

    assert invisible.status_code == missing.status_code == 404
    assert invisible.json()["title"] == missing.json()["title"]
    assert invisible.json()["detail"].replace(str(pending_request.pk), "N") == missing.json()[
        "detail"
    ].replace(str(pending_request.pk + 1000), "N")


def test_a_ready_request_shows_the_identity_ids(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    body = client_for(requester).get(detail(ready_request.pk)).json()

    assert body["status"] == "ready"
    identity = body["identity"]
    assert identity["client_id"] == CLIENT_ID
    assert identity["principal_id"] == PRINCIPAL_ID
    assert identity["tenant_id"] == TENANT
    assert identity["resource_id"].endswith(f"/userAssignedIdentities/{identity['name']}")
    assert body["approvals"][0]["approver"] == "sam"


def test_an_approver_approves_with_a_comment(
    pending_request: IdentityRequest, approver: Any, client_for: Any
) -> None:
    response = client_for(approver).post(
        detail(pending_request.pk, "approve"), {"comment": "Scoped to one vault."}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved"
    assert response.json()["identity"]["client_id"] is None
    event = AuditEvent.objects.filter(identity_request=pending_request).order_by("-id").first()
    assert event is not None
    assert (event.action, event.actor, event.data["comment"]) == (
        "identity_request.approved",
        approver,
        "Scoped to one vault.",
    )


def test_nobody_approves_their_own_request(
    requester: Any, team: Any, make_draft: Any, client_for: Any
) -> None:
    from identities.services import identity_request_create
    from tests.support.people import UserFactory

    self_approver = UserFactory(username="selfish", in_groups=["requesters", "approvers"])
    team.memberships.create(user=self_approver)
    mine = identity_request_create(requester=self_approver, draft=make_draft())

    response = client_for(self_approver).post(detail(mine.pk, "approve"), {}, format="json")

    assert response.status_code == 403
    assert "own requests" in response.json()["detail"]
    assert audit_count(identity_request=mine) == 1


def test_approving_twice_is_a_conflict(
    pending_request: IdentityRequest, approver: Any, second_approver: Any, client_for: Any
) -> None:
    client_for(approver).post(detail(pending_request.pk, "approve"), {}, format="json")
    response = client_for(second_approver).post(
        detail(pending_request.pk, "approve"), {}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["type"].endswith(":conflict")


def test_a_rejection_needs_a_comment(
    pending_request: IdentityRequest, approver: Any, client_for: Any
) -> None:
    client = client_for(approver)
    missing = client.post(detail(pending_request.pk, "reject"), {}, format="json")
    response = client.post(
        detail(pending_request.pk, "reject"), {"comment": "Use the shared vault."}, format="json"
    )

    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "comment"
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert response.json()["approvals"][0]["comment"] == "Use the shared vault."


def test_the_requester_cancels_a_pending_request(
    pending_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(detail(pending_request.pk, "cancel"), format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert AuditEvent.objects.filter(
        identity_request=pending_request, action="identity_request.cancelled"
    ).exists()


def test_a_failed_request_is_retried(
    failed_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    assert failed_request.status == "failed"
    response = client_for(requester).post(detail(failed_request.pk, "retry"), format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "provisioning"


def test_the_audit_trail_is_in_chain_order(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    body = client_for(requester).get(detail(ready_request.pk, "audit")).json()
    actions = [row["action"] for row in body["results"]]
    assert actions[0] == "identity_request.created"
    assert actions[-1] == "identity_request.ready"
    ids = [row["id"] for row in body["results"]]
    assert ids == sorted(ids)


def test_steps_are_listed_in_plan_order(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    from provisioning.models import ProvisioningStep

    for position, key in enumerate(["identity", "fic", "role"]):
        ProvisioningStep.objects.create(
            identity_request=ready_request, key=key, label=key, position=position, status="done"
        )
    body = client_for(requester).get(detail(ready_request.pk, "steps")).json()
    assert [step["key"] for step in body] == ["identity", "fic", "role"]


def test_every_missing_field_of_a_new_identity_is_named_in_one_answer(
    requester: Any, client_for: Any
) -> None:
    """Acceptance run: `{}` named cluster, namespace, service_account and justification, and
    only the next try named team and app_name."""
    response = client_for(requester).post("/api/v1/identity-requests/", {}, format="json")

    assert response.status_code == 400, response.content
    fields = {error["field"]: error["rule"] for error in response.json()["errors"]}
    assert fields == {
        "team": "required",
        "app_name": "required",
        "cluster": "required",
        "namespace": "required",
        "service_account": "required",
        "justification": "required",
    }
