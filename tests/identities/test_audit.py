"""The hash-chained audit trail: appends, verification, tamper detection, export."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from hypothesis import example, given, settings
from hypothesis import strategies as st

from identities.audit import (
    audit_record,
    audit_verify_chain,
    canonical_json,
    event_hash,
    event_payload,
)
from identities.audit.hashing import EXPORT_FIELDS
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


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_canonical_json_is_json_dumps_with_sorted_keys_no_whitespace_and_ascii(value: Any) -> None:
    expected = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    assert canonical_json(value) == expected


# The fields of an audit row, for the property tests of the hand-written canonical forms.
row_fields = {
    "event_id": st.integers(min_value=1, max_value=2**62),
    "actor_id": st.none() | st.integers(min_value=1, max_value=2**31),
    "text": st.text(max_size=20),
    "request_id": st.none() | st.integers(min_value=1, max_value=2**31),
    "identity_id": st.none() | st.integers(min_value=1, max_value=2**31),
    "data": st.dictionaries(st.text(max_size=8), json_values, max_size=4),
}


@settings(max_examples=300, deadline=None)
@given(**row_fields, micros=st.integers(min_value=0, max_value=10**15))
def test_the_hash_covers_exactly_the_documented_payload(
    event_id: int,
    actor_id: int | None,
    text: str,
    request_id: int | None,
    identity_id: int | None,
    data: dict[str, Any],
    micros: int,
) -> None:
    """The writer and the verifier build the hashed text without the dict, for speed; it must
    stay SHA-256(prev_hash + canonical JSON of the exported payload), which outsiders recompute."""
    import datetime
    import hashlib

    event = AuditEvent(
        id=event_id,
        created_at=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
        + datetime.timedelta(microseconds=micros),
        actor_id=actor_id,
        actor_label=text,
        action=text[::-1],
        identity_request_id=request_id,
        identity_id=identity_id,
        data=data,
        prev_hash="ab" * 32,
    )
    material = event.prev_hash + canonical_json(event_payload(event))
    assert event_hash(event) == hashlib.sha256(material.encode("ascii")).hexdigest()


@pytest.mark.django_db
def test_audit_verify_walks_batch_by_batch_and_stops_at_the_first_broken_row(
    requester: Any,
) -> None:
    audit_record(actor=requester, action="test.ünïcode", data={"text": "café ☕", "n": 0.5})
    _append(6)
    assert audit_verify_chain(chunk_size=2) == audit_verify_chain()
    assert audit_verify_chain(chunk_size=2).rows_checked == 7

    _tamper("UPDATE identities_auditevent SET data = %s WHERE id = %s", [json.dumps({"n": 9}), 6])

    report = audit_verify_chain(chunk_size=2)
    assert (report.ok, report.broken_id, report.rows_checked) == (False, 6, 5)
    # The verifier's read transaction and cursor are closed: the connection is usable.
    assert AuditEvent.objects.count() == 7


# 12 rows walked in 3 slices by 3 processes: rows 1-4, 5-8 and 9 on.
SLICE_TAMPERING = {
    "intact": [],
    "a row inside a slice altered": [
        ("UPDATE identities_auditevent SET action = 'x' WHERE id = 6",)
    ],
    "the first row of a slice deleted": [("DELETE FROM identities_auditevent WHERE id = 5",)],
    "the last row of a slice deleted": [("DELETE FROM identities_auditevent WHERE id = 4",)],
    "a whole slice deleted": [("DELETE FROM identities_auditevent WHERE id BETWEEN 5 AND 8",)],
    "the first row of a slice forged with its hash": [("forge", 9)],
    "the last row of a slice forged with its hash": [("forge", 8)],
    "two breaks, the earlier wins": [
        ("UPDATE identities_auditevent SET action = 'x' WHERE id = 10",),
        ("DELETE FROM identities_auditevent WHERE id = 3",),
    ],
}


# serialized_rollback like the other transactional tests here: a plain flush would recreate the
# content types that their rollback then inserts again.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("scenario", SLICE_TAMPERING)
def test_walking_in_slices_reports_exactly_what_one_walk_reports(scenario: str) -> None:
    from identities.audit.chain import verify_chain

    postgres_or_missing()
    _append(12)
    for step in SLICE_TAMPERING[scenario]:
        if step[0] == "forge":
            forged = AuditEvent.objects.get(pk=step[1])
            forged.actor_label = "mallory"
            _tamper(
                "UPDATE identities_auditevent SET actor_label = %s, hash = %s WHERE id = %s",
                ["mallory", event_hash(forged), step[1]],
            )
        else:
            _tamper(step[0], [])

    one_walk = audit_verify_chain()
    sliced = verify_chain(chunk_size=2, processes=3, min_rows_per_process=1)

    assert sliced == one_walk
    assert one_walk.ok == (scenario == "intact")


@settings(max_examples=300, deadline=None)
@given(**row_fields)
def test_an_export_line_is_the_canonical_json_of_the_row(
    event_id: int,
    actor_id: int | None,
    text: str,
    request_id: int | None,
    identity_id: int | None,
    data: dict[str, Any],
) -> None:
    """The export writes each JSON line without building the dict, for speed."""
    from identities.audit.export import json_line

    row = {
        "id": event_id,
        "created_at": "2026-11-23T17:00:00.000001Z",
        "actor_id": actor_id,
        "actor_label": text,
        "action": text[::-1],
        "identity_request_id": request_id,
        "identity_id": identity_id,
        "data": data,
        "prev_hash": "ab" * 32,
        "hash": "cd" * 32,
    }
    values = tuple(canonical_json(row[f]) if f == "data" else row[f] for f in EXPORT_FIELDS)
    assert json_line(values) == canonical_json(row) + "\n"


@pytest.mark.django_db
def test_every_exported_row_rehashes_to_its_hash(requester: Any) -> None:
    """What an outsider does with an export: SHA-256(prev_hash + canonical JSON of the row minus
    both hashes) must give the row's hash, whatever the data held (the export reads timestamps
    and JSON as PostgreSQL's text on that database)."""
    import hashlib

    from identities.audit.export import export_blocks

    tricky = [
        {"text": "naïve — ünïcode ✓", "nested": {"b": [1, 2.5, None, True], "a": '\n\t"\\'}},
        {"big": 2**53 + 1, "float": 1e-7, "neg": -0.5, "empty": {}, "list": []},
        {"z": 1, "a": {"y": [{"k": "v"}]}},
    ]
    for data in tricky:
        audit_record(actor=requester, action="test.tricky", data=data)

    for fmt in ("jsonl", "csv"):
        text = "".join(export_blocks(AuditEvent.objects.order_by("id"), fmt))
        if fmt == "jsonl":
            rows = [json.loads(line) for line in text.splitlines()]
        else:
            rows = [
                {**row, "data": json.loads(row["data"])}
                for row in csv.DictReader(io.StringIO(text))
            ]
        assert len(rows) == AuditEvent.objects.count()
        for row in rows:
            payload = {key: value for key, value in row.items() if key not in ("prev_hash", "hash")}
            if fmt == "csv":  # CSV carries text: the ids back to numbers, empty cells to null
                payload = {
                    key: (None if value == "" else int(value))
                    if key in ("id", "actor_id", "identity_request_id", "identity_id")
                    else value
                    for key, value in payload.items()
                }
            material = row["prev_hash"] + canonical_json(payload)
            assert hashlib.sha256(material.encode("ascii")).hexdigest() == row["hash"], row


# --- the verifier's fast canonical form (orjson), with the exact one behind it -------------------


def _chained_rows(datas: list[Any]) -> list[tuple[Any, ...]]:
    """Rows as the verifier reads them (the export's columns), hashed by the writer's own
    canonical_json(): what audit_record() would have stored."""
    from identities.audit.hashing import hash_material

    rows, prev_hash = [], GENESIS_HASH
    for n, data in enumerate(datas, start=1):
        stamp = f"2026-01-01T00:00:{n % 60:02d}.000000Z"
        material = hash_material(
            prev_hash, n, stamp, None, "ci", "test.row", None, None, canonical_json(data)
        )
        row_hash = hashlib.sha256(material).hexdigest()
        rows.append((n, stamp, None, "ci", "test.row", None, None, data, prev_hash, row_hash))
        prev_hash = row_hash
    return rows


def _walk_values(rows: list[tuple[Any, ...]]) -> Any:
    from identities.audit.chain import Renderers, _as_is, _fast_canonical, _walk

    return _walk([rows], Renderers(str, _fast_canonical(_as_is), canonical_json), 0, GENESIS_HASH)


@settings(max_examples=300, deadline=None)
@given(datas=st.lists(json_values, min_size=1, max_size=4), which=st.integers(min_value=0))
@example(datas=[{"n": 1}, {"del": "a\x7fb"}, [1e-07, 2**70], "café"], which=1)
@example(datas=[{"n": 1}, {"del": "a\x7fb"}, [1e-07, 2**70], "café"], which=2)
def test_the_fast_form_never_changes_the_verdict(datas: list[Any], which: int) -> None:
    """orjson writes some values otherwise than canonical_json() (DEL, 1e-07, integers past 64
    bits, any non-ASCII): such rows verify by the exact form, and an altered row still fails."""
    rows = _chained_rows(datas)
    walk = _walk_values(rows)
    assert (walk.broken_id, walk.checked) == (None, len(rows))

    at = which % len(rows)
    altered = list(rows[at])
    altered[7] = {"altered": altered[7]}
    rows[at] = tuple(altered)
    walk = _walk_values(rows)
    assert (walk.broken_id, walk.checked) == (at + 1, at)
    assert "does not match its hash" in walk.reason


plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(alphabet=st.characters(max_codepoint=126)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(max_codepoint=126), max_size=8), children)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=plain_values)
def test_the_fast_form_is_the_canonical_form_of_plain_values(value: Any) -> None:
    """What the portal writes (ids, names, ASCII text, integers) takes the fast path: the exact
    encoder runs only for what orjson writes otherwise."""
    from identities.audit.chain import _as_is, _fast_canonical

    assert _fast_canonical(_as_is)(value) == canonical_json(value)


@pytest.mark.django_db
def test_rows_the_fast_form_cannot_write_verify_on_the_database_and_still_break() -> None:
    """Through the database's own text of the JSON (jsonb on PostgreSQL): DEL, a small float
    and an integer past 64 bits verify, and altering such a row is caught."""
    audit_record(actor=None, action="test.edge", data={"del": "a\x7fb", "small": 1e-07})
    audit_record(actor=None, action="test.edge", data={"big": 2**70, "neg": -(2**64)})
    _append(2)
    assert audit_verify_chain() == audit_verify_chain(chunk_size=1)
    assert (audit_verify_chain().ok, audit_verify_chain().rows_checked) == (True, 4)

    _tamper(
        "UPDATE identities_auditevent SET data = %s WHERE id = %s",
        [json.dumps({"big": 2**70 + 1, "neg": -(2**64)}), 2],
    )
    report = audit_verify_chain()
    assert (report.ok, report.broken_id, report.rows_checked) == (False, 2, 1)
