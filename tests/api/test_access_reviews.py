"""Access reviews and ownership transfers through the API: open, list, attest, export the
evidence (CSV and JSON Lines, each attestation with its audit row), transfer end to end, and
bad input as problem documents naming the field."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from identities.models import AuditEvent, IdentityRequest

pytestmark = pytest.mark.django_db

Clients = Callable[[Any], APIClient]


def _open(client: APIClient, **body: Any) -> Any:
    return client.post(
        "/api/v1/access-reviews/",
        {"name": "Q4", "due_at": "2099-01-01T00:00:00Z", **body},
        format="json",
    )


def test_security_opens_a_review_and_the_team_attests_and_exports(
    client_for: Clients, approver: Any, requester: Any, ready_request: IdentityRequest
) -> None:
    response = _open(client_for(approver), grace_days=2, revoke_when_overdue=True)
    assert response.status_code == 201, response.content
    campaign = response.json()
    assert campaign["item_count"] == 1
    opened = AuditEvent.objects.get(action="access_review.opened")
    assert opened.data["snapshot_sha256"] == campaign["snapshot_sha256"]

    team = client_for(requester)
    items = team.get(f"/api/v1/access-reviews/{campaign['id']}/items/?to_review=true").json()
    [item] = items["results"]
    assert item["identity_id"] == ready_request.identity_id
    response = team.post(
        f"/api/v1/access-reviews/items/{item['id']}/attest/",
        {"decision": "keep", "comment": "Still reads its secrets."},
        format="json",
    )
    assert response.status_code == 200, response.content
    [attestation] = response.json()["attestations"]
    event = AuditEvent.objects.get(pk=attestation["audit_row_id"])
    assert event.action == "access_review.attested"
    assert event.hash == attestation["audit_row_hash"]
    assert (
        team.get(f"/api/v1/access-reviews/{campaign['id']}/items/?to_review=true").json()["results"]
        == []
    )

    detail = team.get(f"/api/v1/access-reviews/{campaign['id']}/").json()
    assert detail["progress"]["counts"]["keep"] == 1
    assert detail["progress"]["percent"] == 100

    jsonl = team.get(f"/api/v1/access-reviews/{campaign['id']}/evidence/")
    assert jsonl["Content-Type"].startswith("application/jsonl")
    [record] = [json.loads(line) for line in b"".join(jsonl.streaming_content).splitlines()]
    assert record["audit_row_id"] == event.pk
    assert record["audit_row_hash"] == event.hash
    assert record["attester"] == requester.username
    csv_response = team.get(f"/api/v1/access-reviews/{campaign['id']}/evidence/?format=csv")
    assert csv_response["Content-Type"].startswith("text/csv")
    text = b"".join(csv_response.streaming_content).decode()
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["audit_row_id"] == str(event.pk)
    assert row["decision"] == "keep"


def test_bad_input_is_a_problem_naming_the_field(
    client_for: Clients, approver: Any, ready_request: IdentityRequest
) -> None:
    response = _open(client_for(approver), due_at="2001-01-01T00:00:00Z")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "due_at" in response.content.decode()
    response = _open(client_for(approver), grace_days=-1)
    assert response.status_code == 400
    assert "grace_days" in response.content.decode()
    response = _open(client_for(approver), team="no-such-team")
    assert response.status_code == 400
    assert "team" in response.content.decode()


def test_remove_answers_with_the_decommission_request(
    client_for: Clients, approver: Any, requester: Any, ready_request: IdentityRequest
) -> None:
    campaign = _open(client_for(approver)).json()
    team = client_for(requester)
    [item] = team.get(f"/api/v1/access-reviews/{campaign['id']}/items/").json()["results"]
    response = team.post(
        f"/api/v1/access-reviews/items/{item['id']}/attest/",
        {"decision": "remove"},
        format="json",
    )
    assert response.status_code == 200, response.content
    follow_up = IdentityRequest.objects.get(pk=response.json()["follow_up_request"])
    assert follow_up.kind == "decommission"
    again = team.post(
        f"/api/v1/access-reviews/items/{item['id']}/attest/", {"decision": "keep"}, format="json"
    )
    assert again.status_code == 409


def test_a_transfer_goes_from_request_to_consent_to_approval(
    client_for: Clients,
    approver: Any,
    requester: Any,
    outsider: Any,
    ready_request: IdentityRequest,
) -> None:
    response = client_for(requester).post(
        "/api/v1/ownership-transfers/",
        {"identity": ready_request.identity_id, "to_team": "search", "justification": "Reorg."},
        format="json",
    )
    assert response.status_code == 201, response.content
    pk = response.json()["id"]
    early = client_for(approver).post(
        f"/api/v1/ownership-transfers/{pk}/approve/", {}, format="json"
    )
    assert early.status_code == 409
    consent = client_for(outsider).post(f"/api/v1/ownership-transfers/{pk}/consent/")
    assert consent.json()["status"] == "awaiting_approval"
    approved = client_for(approver).post(
        f"/api/v1/ownership-transfers/{pk}/approve/", {}, format="json"
    )
    assert approved.status_code == 200, approved.content
    assert approved.json()["status"] == "completed"
    identity = client_for(outsider).get(f"/api/v1/identities/{ready_request.identity_id}/")
    assert identity.status_code == 200  # search owns it now
    assert (
        client_for(requester).get(f"/api/v1/identities/{ready_request.identity_id}/").status_code
        == 404
    )


def test_a_pipeline_cannot_attest_people_do(
    client_for: Clients,
    token_client: Callable[[str], APIClient],
    approver: Any,
    requester: Any,
    ready_request: IdentityRequest,
) -> None:
    """Red team: two service tokens of the team completed the two-person keep of privileged
    access. An attestation is a person's word; a pipeline's credential is refused."""
    campaign = _open(client_for(approver)).json()
    minted = client_for(requester).post(
        "/api/v1/service-tokens/",
        {"team": "payments", "service_principal": "bot-a", "name": "a", "scopes": ["request"]},
        format="json",
    )
    assert minted.status_code == 201, minted.content
    bot = token_client(minted.json()["token"])
    team = client_for(requester)
    [item] = team.get(f"/api/v1/access-reviews/{campaign['id']}/items/").json()["results"]

    response = bot.post(
        f"/api/v1/access-reviews/items/{item['id']}/attest/", {"decision": "keep"}, format="json"
    )

    assert response.status_code == 403, response.content
    assert "attested by people" in response.content.decode()
    assert not AuditEvent.objects.filter(action="access_review.attested").exists()
