"""audit_batch(): several appends in one transaction under one acquisition of the chain's lock."""

from __future__ import annotations

import contextlib
import itertools
import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from identities.audit import (
    audit_batch,
    audit_record,
    audit_rollback_guard,
    audit_rows_deferred,
    audit_verify_chain,
)
from identities.models import GENESIS_HASH, AuditEvent
from tests.support.services import postgres_or_missing


def _lock_statements(queries: CaptureQueriesContext) -> int:
    return sum("pg_advisory_xact_lock" in query["sql"] for query in queries.captured_queries)


@pytest.mark.django_db
def test_rows_appended_in_a_batch_link_to_each_other_and_to_the_rows_before() -> None:
    before = audit_record(actor=None, action="test.before")
    with audit_batch():
        batch = [audit_record(actor=None, action="test.batch", data={"n": n}) for n in range(4)]
    after = audit_record(actor=None, action="test.after")

    chain = [before, *batch, after]
    assert [event.id for event in chain] == list(range(before.id, before.id + 6))
    assert all(row.prev_hash == previous.hash for previous, row in itertools.pairwise(chain))
    stored = list(AuditEvent.objects.order_by("id").values_list("hash", flat=True))
    assert stored == [event.hash for event in chain]
    assert audit_verify_chain().ok


# Parametrized when deferred rows came (audit_rows_deferred): held rows are dropped alike.
@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.django_db
def test_a_failure_inside_a_batch_writes_none_of_its_rows(deferred: bool) -> None:
    before = audit_record(actor=None, action="test.before")
    held = audit_rows_deferred() if deferred else contextlib.nullcontext()
    with pytest.raises(RuntimeError), audit_batch(), held:
        audit_record(actor=None, action="test.batch")
        raise RuntimeError("the phase failed")
    after = audit_record(actor=None, action="test.after")

    assert list(AuditEvent.objects.values_list("action", flat=True)) == [
        "test.before",
        "test.after",
    ]
    assert (after.id, after.prev_hash) == (before.id + 1, before.hash)
    assert audit_verify_chain().ok


@pytest.mark.django_db
def test_a_batch_takes_the_chain_lock_once_however_many_rows() -> None:
    postgres_or_missing()
    with CaptureQueriesContext(connection) as one_by_one:
        for n in range(5):
            audit_record(actor=None, action="test.single", data={"n": n})
    with CaptureQueriesContext(connection) as batched, audit_batch():
        for n in range(5):
            audit_record(actor=None, action="test.batch", data={"n": n})

    assert _lock_statements(one_by_one) == 5
    assert _lock_statements(batched) == 1
    assert audit_verify_chain().ok


# Parametrized when deferred rows came (audit_rows_deferred): the same writers, whose batches
# hold their rows and insert them together.
@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.django_db(transaction=True)
def test_batches_and_single_appends_from_concurrent_writers_never_fork_the_chain(
    deferred: bool,
) -> None:
    postgres_or_missing()
    writers, rounds, per_batch = 6, 4, 3
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            barrier.wait()
            for n in range(rounds):
                if index % 2:
                    held = audit_rows_deferred() if deferred else contextlib.nullcontext()
                    with audit_batch(), held:
                        for m in range(per_batch):
                            audit_record(actor=None, action="test.batch", data={"w": index, "m": m})
                else:
                    with transaction.atomic():
                        audit_record(actor=None, action="test.single", data={"w": index, "n": n})
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
    expected = (writers // 2) * rounds * per_batch + (writers // 2) * rounds
    assert AuditEvent.objects.count() == expected
    report = audit_verify_chain()
    assert report.ok, report.reason
    assert report.rows_checked == expected


def _inserts(queries: CaptureQueriesContext) -> int:
    return sum(
        query["sql"].startswith('INSERT INTO "identities_auditevent"')
        for query in queries.captured_queries
    )


@pytest.mark.django_db
def test_deferred_rows_are_chained_at_once_and_inserted_in_one_statement() -> None:
    before = audit_record(actor=None, action="test.before")
    with CaptureQueriesContext(connection) as queries, audit_batch():
        audit_record(actor=None, action="test.first")  # written at once, as before
        with audit_rows_deferred():
            deferred = [
                audit_record(actor=None, action="test.deferred", data={"n": n}) for n in range(5)
            ]
            # Numbered and hashed already (callers may reference them), not yet written.
            assert [event.id for event in deferred] == list(range(before.id + 2, before.id + 7))
            assert not AuditEvent.objects.filter(action="test.deferred").exists()
        last = audit_record(actor=None, action="test.last")
    assert _inserts(queries) == 3  # the first, the five deferred together, the last
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "hash"))
    assert [a for a, _h in actions] == [
        "test.before",
        "test.first",
        *["test.deferred"] * 5,
        "test.last",
    ]
    assert [h for _a, h in actions][2:7] == [event.hash for event in deferred]
    assert last.prev_hash == deferred[-1].hash
    assert audit_verify_chain().ok


def test_rows_are_deferred_only_inside_a_batch() -> None:
    with pytest.raises(RuntimeError, match="inside audit_batch"), audit_rows_deferred():
        pass


@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.django_db
def test_a_call_whose_error_is_caught_leaves_no_row_and_the_chain_whole(deferred: bool) -> None:
    # A call inside a batch that writes a row in its own savepoint and then fails, its error
    # caught (a run finding its request finished by another): without audit_rollback_guard, a
    # held row of the undone change was inserted at the end (deferred), or the next row chained
    # to the rolled-back one (not deferred), and the chain no longer verified.
    before = audit_record(actor=None, action="test.before")
    held = audit_rows_deferred() if deferred else contextlib.nullcontext()
    with audit_batch(), held:
        kept = audit_record(actor=None, action="test.kept")
        with contextlib.suppress(LookupError), audit_rollback_guard(), transaction.atomic():
            audit_record(actor=None, action="test.undone")
            raise LookupError("finished by another run")
        after = audit_record(actor=None, action="test.after")

    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "test.before",
        "test.kept",
        "test.after",
    ]
    assert [kept.prev_hash, after.prev_hash] == [before.hash, kept.hash]
    assert after.id == kept.id + 1
    assert audit_verify_chain().ok


@pytest.mark.django_db
def test_the_rollback_guard_does_nothing_outside_a_batch() -> None:
    with contextlib.suppress(LookupError), audit_rollback_guard(), transaction.atomic():
        audit_record(actor=None, action="test.undone")
        raise LookupError("undone")
    after = audit_record(actor=None, action="test.after")

    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["test.after"]
    assert after.prev_hash == GENESIS_HASH  # the undone row is not its predecessor
    assert audit_verify_chain().ok
