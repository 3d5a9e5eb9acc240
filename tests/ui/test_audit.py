"""The audit log: filters, search, export and the chain verification status."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from identities.audit import event_hash
from identities.models import AuditEvent, IdentityRequest
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


def alter_behind_the_portals_back(sql: str, params: list[Any]) -> None:
    """Run `sql` on the audit table; PostgreSQL's append-only trigger is lifted around it."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # ALTER TABLE refuses to run while this test's deferred FK checks are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(
                "ALTER TABLE identities_auditevent DISABLE TRIGGER auditevent_append_only"
            )
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE identities_auditevent ENABLE TRIGGER auditevent_append_only"
            )
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def test_auditors_see_every_row_and_the_chain_verdict(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest, other_team_request: Any
) -> None:
    response = client_for(auditor).get(reverse("audit_log"))

    assert len(response.context["rows"]) == AuditEvent.objects.count()
    chain = response.context["chain"]
    assert chain.ok is True
    # No full check has run yet; a chain this short is walked whole on the page view.
    assert chain.full_check is None
    assert (chain.tail_verified, chain.tail_rows) == (True, AuditEvent.objects.count())
    assert chain.rows == AuditEvent.objects.count()
    assert "Chain verified" in response.content.decode()


def test_a_broken_chain_is_reported_with_the_first_bad_row(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest
) -> None:
    victim = AuditEvent.objects.order_by("id")[1]
    alter_behind_the_portals_back(
        "UPDATE identities_auditevent SET actor_label = %s WHERE id = %s", ["mallory", victim.pk]
    )

    response = client_for(auditor).get(reverse("audit_log"))

    assert response.context["chain"].broken_id == victim.pk
    assert f"Chain broken at row {victim.pk}" in response.content.decode()


def test_filters_narrow_by_action_prefix_request_and_actor(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest, other_team_request: Any
) -> None:
    client = client_for(auditor)

    by_prefix = client.get(reverse("audit_log"), {"action": "identity_request."})
    by_request = client.get(reverse("audit_log"), {"identity_request": other_team_request.pk})
    by_actor = client.get(reverse("audit_log"), {"actor": "sam"})

    assert {r.event.action.split(".")[0] for r in by_prefix.context["rows"]} == {"identity_request"}
    assert [r.event.action for r in by_request.context["rows"]] == ["identity_request.created"]
    assert {r.event.actor_label for r in by_actor.context["rows"]} == {"sam"}


def test_search_finds_text_inside_the_recorded_data(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest, other_team_request: Any
) -> None:
    response = client_for(auditor).get(reverse("audit_log"), {"q": "indexer"})

    rows = response.context["rows"]
    assert rows
    assert {r.event.identity_request_id for r in rows} == {other_team_request.pk}


def test_a_bad_filter_is_explained(client_for: ClientFor, auditor: Any) -> None:
    response = client_for(auditor).get(reverse("audit_log"), {"identity_request": "abc"})

    assert response.status_code == 200
    assert "Request #: Enter a whole number." in response.content.decode()


def test_csv_export_has_the_hashes_that_let_anyone_recheck_the_chain(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(auditor).get(reverse("audit_export"), {"format": "csv"})

    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.DictReader(io.StringIO(response.getvalue().decode())))
    assert [int(row["id"]) for row in rows] == list(
        AuditEvent.objects.order_by("id").values_list("id", flat=True)
    )
    for row, event in zip(rows, AuditEvent.objects.order_by("id"), strict=True):
        assert row["hash"] == event.hash == event_hash(event)
        assert json.loads(row["data"]) == event.data


def test_jsonl_export_follows_the_filters(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(auditor).get(
        reverse("audit_export"), {"format": "jsonl", "action": "identity_request.created"}
    )

    lines = response.getvalue().decode().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["identity_request.created"]


def test_a_requesters_export_holds_only_their_teams_rows(
    client_for: ClientFor, outsider: Any, ready_request: IdentityRequest, other_team_request: Any
) -> None:
    response = client_for(outsider).get(reverse("audit_export"), {"format": "jsonl"})

    lines = response.getvalue().decode().splitlines()
    assert {json.loads(line)["identity_request_id"] for line in lines} == {other_team_request.pk}


def test_an_unknown_export_format_is_refused(client_for: ClientFor, auditor: Any) -> None:
    response = client_for(auditor).get(reverse("audit_export"), {"format": "xml"})

    assert response.status_code == 400


def test_the_whole_trail_is_paged_without_counting_every_row(
    client_for: ClientFor,
    auditor: Any,
    requester: Any,
    ready_request: IdentityRequest,
    other_team_request: Any,
) -> None:
    """count(*) over a million rows is most of the page's time; an unfiltered view of the
    whole trail reads its length off the chain's end instead (ids run without gaps)."""
    from django.test.utils import CaptureQueriesContext

    from identities.audit import audit_record

    for n in range(60):  # past one page of 50
        audit_record(actor=None, action="test.filler", data={"n": n})
    total = AuditEvent.objects.count()

    with CaptureQueriesContext(connection) as queries:
        whole = client_for(auditor).get(reverse("audit_log"), {"page": 2})
    counted = [q["sql"] for q in queries if "COUNT(*)" in q["sql"].upper()]
    assert counted == []
    assert whole.context["page_obj"].paginator.count == total
    assert whole.context["page_obj"].number == 2
    assert len(whole.context["rows"]) == total - 50
    assert f"({total} in all)" in whole.content.decode()

    # Narrowed views still count what they show.
    fillers = client_for(auditor).get(reverse("audit_log"), {"action": "test.filler"})
    assert fillers.context["page_obj"].paginator.count == 60
    own = client_for(requester).get(reverse("audit_log"))
    visible = AuditEvent.objects.filter(identity_request=ready_request).count()
    assert own.context["page_obj"].paginator.count == visible < total
