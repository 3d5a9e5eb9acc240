"""The hash-chained audit trail: appends, verification, tamper detection, export."""

from __future__ import annotations

import json
import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from identities.audit import audit_record, audit_verify_chain, event_hash
from identities.models import GENESIS_HASH, AuditEvent, IdentityRequest
from tests.support.services import postgres_or_missing


def _append(count: int) -> list[AuditEvent]:
    return [audit_record(actor=None, action="test.appended", data={"n": n}) for n in range(count)]


@pytest.mark.django_db
def test_each_row_links_to_the_previous_one() -> None:
    first, second = _append(2)
    assert (first.id, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.id, second.prev_hash) == (2, first.hash)
    assert second.hash == event_hash(second)
    assert audit_verify_chain().ok


@pytest.mark.django_db
def test_data_is_stored_as_json_and_the_hash_survives_the_round_trip(
    pending_request: IdentityRequest, requester: Any
) -> None:
    import datetime
    import decimal
    import uuid

    audit_record(
        actor=requester,
        action="test.types",
        identity_request=pending_request,
        data={
            "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "price": decimal.Decimal("1.50"),
            "big": 1e16,
            "ratio": 0.1,
            "unicode": "café ☕",
        },
    )
    event = AuditEvent.objects.get(action="test.types")
    assert event.data["big"] == 10**16
    assert event.hash == event_hash(event)
    assert audit_verify_chain().ok


@pytest.mark.django_db
def test_audit_verify_reports_ok(capsys: Any) -> None:
    _append(3)
    out = StringIO()
    call_command("audit_verify", stdout=out)
    assert "audit chain OK: 3 rows" in out.getvalue()


def _tamper(sql: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Fire the deferred foreign-key checks of this test's inserts; ALTER TABLE refuses to
            # run while they are pending.
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


@pytest.mark.django_db
def test_audit_verify_names_a_row_altered_behind_the_applications_back() -> None:
    _append(5)
    _tamper("UPDATE identities_auditevent SET data = %s WHERE id = %s", [json.dumps({"n": 99}), 3])

    report = audit_verify_chain()
    assert not report.ok
    assert report.broken_id == 3
    with pytest.raises(CommandError, match="BROKEN at row 3") as caught:
        call_command("audit_verify")
    assert caught.value.returncode == 1


@pytest.mark.django_db
def test_audit_verify_notices_a_row_whose_hash_was_recomputed_at_the_next_row() -> None:
    events = _append(4)
    forged = AuditEvent.objects.get(pk=2)
    forged.actor_label = "mallory"
    forged_hash = event_hash(forged)
    _tamper(
        "UPDATE identities_auditevent SET actor_label = %s, hash = %s WHERE id = %s",
        ["mallory", forged_hash, 2],
    )
    report = audit_verify_chain()
    assert (report.ok, report.broken_id) == (False, 3)
    assert "row 2 was altered" in report.reason
    assert events[0].id == 1


@pytest.mark.django_db
def test_audit_verify_notices_a_deleted_row() -> None:
    _append(4)
    _tamper("DELETE FROM identities_auditevent WHERE id = %s", [2])
    report = audit_verify_chain()
    assert (report.ok, report.broken_id) == (False, 3)
    assert "missing" in report.reason


@pytest.mark.django_db
def test_postgresql_refuses_update_and_delete_on_the_audit_table() -> None:
    postgres_or_missing()
    _append(1)
    for statement in (
        "UPDATE identities_auditevent SET action = 'x'",
        "DELETE FROM identities_auditevent",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert AuditEvent.objects.get().action == "test.appended"


@pytest.mark.django_db
def test_export_streams_json_lines_and_csv_that_carry_the_hashes() -> None:
    events = _append(2)

    out = StringIO()
    call_command("audit_export", "--format", "jsonl", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["hash"] for line in lines] == [e.hash for e in events]
    assert lines[1]["prev_hash"] == events[0].hash
    assert lines[0]["data"] == {"n": 0}

    out = StringIO()
    call_command("audit_export", "--format", "csv", stdout=out)
    rows = out.getvalue().splitlines()
    assert rows[0].startswith("id,created_at,actor_id,actor_label,action")
    assert len(rows) == 3 and events[1].hash in rows[2]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_appends_on_postgresql_never_fork_the_chain() -> None:
    postgres_or_missing()
    writers, per_writer = 6, 5
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            barrier.wait()
            for n in range(per_writer):
                with transaction.atomic():
                    audit_record(actor=None, action="test.concurrent", data={"w": index, "n": n})
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert AuditEvent.objects.count() == writers * per_writer
    report = audit_verify_chain()
    assert report.ok, report.reason
    assert report.rows_checked == writers * per_writer
