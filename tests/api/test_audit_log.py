"""The global audit log for auditors: filters and the streaming export."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.utils import timezone

from identities.audit import event_hash
from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import FileRequest, search_overrides

pytestmark = pytest.mark.django_db

LOG = "/api/v1/audit-events/"
EXPORT = "/api/v1/audit-events/export/"


@pytest.fixture
def history(file_request: FileRequest, outsider: Any, ready_request: IdentityRequest) -> None:
    file_request(as_user=outsider, **search_overrides())


def test_auditors_page_through_the_log_newest_first(
    history: None, auditor: Any, client_for: Any
) -> None:
    body = client_for(auditor).get(LOG, {"page_size": 3}).json()
    ids = [row["id"] for row in body["results"]]
    assert ids == sorted(ids, reverse=True)
    assert ids[0] == AuditEvent.objects.order_by("-id").first().pk  # type: ignore[union-attr]
    assert body["next"]


def test_requesters_are_refused_the_global_log(
    history: None, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).get(LOG)
    assert response.status_code == 403
    assert response.json()["detail"] == "The global audit log is for auditors."


def test_the_log_filters_by_actor_team_action_and_time(
    history: None, auditor: Any, client_for: Any
) -> None:
    client = client_for(auditor)

    def actions(**params: Any) -> list[str]:
        return [row["action"] for row in client.get(LOG, params).json()["results"]]

    assert set(actions(actor="bob")) == {"identity_request.created"}
    assert "identity_request.approved" in actions(actor="sam")
    by_team = client.get(LOG, {"team": "search"}).json()["results"]
    assert [row["actor"] for row in by_team] == ["bob"]
    assert set(actions(action="identity_request.")) >= {
        "identity_request.created",
        "identity_request.approved",
    }
    assert set(actions(action="identity.ready")) == {"identity.ready"}
    assert actions(since=timezone.now().isoformat()) == []
    assert len(actions(until=timezone.now().isoformat())) == AuditEvent.objects.count()


def test_a_malformed_time_filter_is_a_validation_problem(
    auditor: Any, client_for: Any, db: None
) -> None:
    response = client_for(auditor).get(LOG, {"since": "yesterday"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "since"


def test_the_export_streams_json_lines_in_chain_order_that_verify(
    history: None, auditor: Any, client_for: Any
) -> None:
    response = client_for(auditor).get(EXPORT)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/jsonl")
    assert "attachment" in response["Content-Disposition"]
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [r["id"] for r in rows] == list(
        AuditEvent.objects.order_by("id").values_list("id", flat=True)
    )
    for row in rows:
        event = AuditEvent.objects.get(pk=row["id"])
        assert row["hash"] == event.hash == event_hash(event)


def test_the_export_is_csv_on_request_and_takes_the_filters(
    history: None, auditor: Any, client_for: Any
) -> None:
    response = client_for(auditor).get(EXPORT, {"format": "csv", "actor": "bob"})

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["actor_label"] for row in rows] == ["bob"]
    assert json.loads(rows[0]["data"])["kind"] == "new"


def test_the_export_answers_csv_to_an_accept_header(
    history: None, auditor: Any, client_for: Any
) -> None:
    response = client_for(auditor).get(EXPORT, HTTP_ACCEPT="text/csv")
    assert response["Content-Type"].startswith("text/csv")
