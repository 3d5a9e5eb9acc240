"""POST /api/v1/identity-requests/ensure/: find-or-create by cluster + namespace + ServiceAccount,
so a re-run pipeline (new Idempotency-Key, same workload) finds what the first run filed; and the
already_federated refusal of a plain POST names what it met."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import AuditEvent, IdentityRequest
from identities.selectors import WorkloadOutcome
from identities.services import identity_request_ensure, identity_request_reject
from tests.api.conftest import (
    FileRequest,
    TokenFactory,
    approve,
    make_failed,
    make_ready,
    new_request_body,
)

pytestmark = pytest.mark.django_db

ENSURE = "/api/v1/identity-requests/ensure/"
LIST = "/api/v1/identity-requests/"


@pytest.fixture
def pipeline(
    requester: Any, cluster: Any, catalog: Any, make_token: TokenFactory, token_client: Any
) -> Any:
    return token_client(make_token(requester, ["read", "request"]))


def test_the_first_run_files_a_request_and_a_re_run_finds_it(pipeline: Any) -> None:
    first = pipeline.post(ENSURE, new_request_body(), format="json", HTTP_IDEMPOTENCY_KEY="run-1")
    assert first.status_code == 201, first.content
    body = first.json()
    assert (body["outcome"], body["status"]) == ("created", "pending")
    assert first["Location"].endswith(f"/api/v1/identity-requests/{body['id']}/")
    assert body["links"]["manifests"].endswith(f"/api/v1/identity-requests/{body['id']}/manifests/")
    assert body["links"]["identity"] is None
    assert AuditEvent.objects.filter(action="identity_request.created").count() == 1
    audit_rows = AuditEvent.objects.count()

    again = pipeline.post(ENSURE, new_request_body(), format="json", HTTP_IDEMPOTENCY_KEY="run-2")

    assert again.status_code == 200, again.content
    assert (again.json()["id"], again.json()["outcome"]) == (body["id"], "request_open")
    assert IdentityRequest.objects.count() == 1
    assert AuditEvent.objects.count() == audit_rows, "finding writes nothing"


def test_a_ready_identity_is_found_with_its_identity_and_manifests_links(
    pipeline: Any, pending_request: IdentityRequest, approver: Any
) -> None:
    ready = make_ready(approve(pending_request, approver))

    response = pipeline.post(ENSURE, new_request_body(), format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["outcome"], body["status"]) == (ready.pk, "identity_exists", "ready")
    assert body["identity"]["id"] == ready.identity_id
    assert body["links"]["identity"].endswith(f"/api/v1/identities/{ready.identity_id}/")
    manifests = pipeline.get(body["links"]["manifests"], HTTP_ACCEPT="application/yaml")
    assert manifests.status_code == 200
    assert b"azure.workload.identity/client-id" in manifests.content


def test_a_failed_request_is_the_open_one_and_is_not_filed_again(
    pipeline: Any, pending_request: IdentityRequest, approver: Any
) -> None:
    failed = make_failed(approve(pending_request, approver))

    response = pipeline.post(ENSURE, new_request_body(), format="json")

    assert response.status_code == 200, response.content
    assert (response.json()["id"], response.json()["outcome"]) == (failed.pk, "request_open")
    assert response.json()["status"] == "failed"


def test_after_a_rejection_ensure_files_a_new_request(
    pipeline: Any, pending_request: IdentityRequest, approver: Any
) -> None:
    identity_request_reject(identity_request=pending_request, approver=approver, comment="No.")

    response = pipeline.post(ENSURE, new_request_body(), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["id"] != pending_request.pk


def test_the_key_is_the_workload_not_the_body(
    pipeline: Any, pending_request: IdentityRequest
) -> None:
    other_app = pipeline.post(
        ENSURE, new_request_body(app_name="checkout2", justification="x" * 30), format="json"
    )
    other_sa = pipeline.post(
        ENSURE, new_request_body(service_account="payroll", app_name="payroll"), format="json"
    )

    assert (other_app.status_code, other_app.json()["id"]) == (200, pending_request.pk)
    assert other_sa.status_code == 201


def test_another_teams_request_is_not_found_nor_named(
    pending_request: IdentityRequest,
    outsider: Any,
    make_token: TokenFactory,
    token_client: Any,
) -> None:
    client = token_client(make_token(outsider, ["read", "request"]))

    response = client.post(ENSURE, new_request_body(team="search"), format="json")

    assert response.status_code == 400
    problem = response.json()
    assert "namespace_not_owned" in {error["rule"] for error in problem["errors"]}
    assert "existing" not in problem
    assert f"/identity-requests/{pending_request.pk}/" not in response.content.decode()
    assert "pending_duplicate" in {warning["rule"] for warning in problem["warnings"]}


def test_ensure_needs_a_requester_token_with_the_request_scope(
    requester: Any,
    cluster: Any,
    catalog: Any,
    make_token: TokenFactory,
    token_client: Any,
    api_client: Any,
) -> None:
    read_only = token_client(make_token(requester, ["read"]))

    assert read_only.post(ENSURE, new_request_body(), format="json").status_code == 403
    assert api_client.post(ENSURE, new_request_body(), format="json").status_code == 401
    assert IdentityRequest.objects.count() == 0


def test_an_invalid_body_is_a_problem_naming_the_field(pipeline: Any) -> None:
    response = pipeline.post(ENSURE, new_request_body(namespace=""), format="json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert {error["field"] for error in response.json()["errors"]} == {"namespace"}


def test_the_same_idempotency_key_replays_the_first_answer(pipeline: Any) -> None:
    first = pipeline.post(ENSURE, new_request_body(), format="json", HTTP_IDEMPOTENCY_KEY="k")
    replay = pipeline.post(ENSURE, new_request_body(), format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]


def test_already_federated_names_the_existing_identity_and_request(
    pipeline: Any, pending_request: IdentityRequest, approver: Any
) -> None:
    ready = make_ready(approve(pending_request, approver))

    response = pipeline.post(
        LIST, new_request_body(app_name="checkout2"), format="json", HTTP_IDEMPOTENCY_KEY="rerun"
    )

    assert response.status_code == 400, response.content
    problem = response.json()
    assert "already_federated" in {error["rule"] for error in problem["errors"]}
    existing = problem["existing"]
    assert (existing["identity_request_id"], existing["identity_id"]) == (
        ready.pk,
        ready.identity_id,
    )
    assert existing["outcome"] == "identity_exists"
    assert existing["links"]["identity_request"].endswith(f"/api/v1/identity-requests/{ready.pk}/")
    assert pipeline.get(existing["links"]["identity"]).status_code == 200


def test_the_service_finds_without_writing_and_files_with_its_audit_row(
    requester: Any, make_draft: Any, file_request: FileRequest
) -> None:
    created = identity_request_ensure(requester=requester, draft=make_draft(service_account="new"))
    assert created.outcome == WorkloadOutcome.CREATED
    assert AuditEvent.objects.filter(
        action="identity_request.created", identity_request=created.identity_request
    ).exists()
    rows = AuditEvent.objects.count()

    found = identity_request_ensure(requester=requester, draft=make_draft(service_account="new"))

    assert (found.outcome, found.identity_request.pk) == (
        WorkloadOutcome.REQUEST_OPEN,
        created.identity_request.pk,
    )
    assert AuditEvent.objects.count() == rows
