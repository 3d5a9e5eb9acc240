"""audit_batch(): several appends in one transaction under one acquisition of the chain's lock."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from identities.audit import audit_batch, audit_record, audit_verify_chain
from identities.models import AuditEvent
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


@pytest.mark.django_db
def test_a_failure_inside_a_batch_writes_none_of_its_rows() -> None:
    before = audit_record(actor=None, action="test.before")
    with pytest.raises(RuntimeError), audit_batch():
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


@pytest.mark.django_db(transaction=True)
def test_batches_and_single_appends_from_concurrent_writers_never_fork_the_chain() -> None:
    postgres_or_missing()
    writers, rounds, per_batch = 6, 4, 3
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            barrier.wait()
            for n in range(rounds):
                if index % 2:
                    with audit_batch():
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
