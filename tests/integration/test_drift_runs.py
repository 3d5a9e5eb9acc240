"""The scheduled drift run against the emulator's read bucket: batches with a persisted cursor,
reads paced by a token bucket, 429s and Retry-After honoured, one run (and batch) at a time.

Batches run in this process here (a list stands in for the drift queue); real workers, a kill
and provisioning beside a run are in tests/faults/test_drift_runs_workers.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import override_settings

from identities.models import DriftState, Identity
from provisioning.drift import run_batch, run_tick
from provisioning.models import DriftRun
from provisioning.reconcile import reconcile_request
from tests.faults.helpers import approve_new
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROLES = 3


def make_ready(approved_request: ApprovedRequestFactory, count: int) -> list[int]:
    pks = []
    for number in range(count):
        identity_request = approve_new(approved_request, number, roles=ROLES)
        reconcile_request(identity_request.pk)
        identity_request.refresh_from_db()
        assert identity_request.status == "ready", identity_request.last_error
        pks.append(identity_request.identity_id)
    return pks


class InlineQueue:
    """The drift queue, drained in this process (countdowns slept)."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, str, float]] = []
        self.results: list[dict[str, Any]] = []

    def __call__(self, run_id: int, ticket: str, countdown: float) -> None:
        self.messages.append((run_id, ticket, countdown))

    def drain(self) -> None:
        while self.messages:
            run_id, ticket, countdown = self.messages.pop(0)
            time.sleep(countdown)
            self.results.append(run_batch(run_id, ticket, enqueue_batch=self))


def arm_reads(sandbox: Sandbox, since: int) -> list[dict[str, Any]]:
    return [
        entry
        for entry in sandbox.emulator.requests(since)
        if entry["method"] == "GET" and entry["path"].lower().startswith("/subscriptions/")
    ]


def test_a_run_reads_at_the_paced_rate_in_batches_and_never_empties_arms_bucket(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    pks = make_ready(approved_request, 12)
    # ARM's read bucket, scaled down: 6 tokens refilled at 10/s; the portal paces at the bound.
    sandbox.emulator.config(read_bucket_capacity=6, read_bucket_refill_per_second=10)
    since = len(sandbox.emulator.requests())
    queue = InlineQueue()
    with override_settings(
        DRIFT_READS_PER_SECOND=10,
        DRIFT_READ_BURST=3,
        DRIFT_READS_RESERVE=1,
        DRIFT_BATCH_SECONDS=1,
        DRIFT_CHUNK=5,
    ):
        started = time.monotonic()
        assert run_tick(enqueue_batch=queue)["status"] == "started"
        assert run_tick(enqueue_batch=queue)["status"] == "running"  # never two runs
        queue.drain()
        elapsed = time.monotonic() - started

    run = DriftRun.objects.get()
    assert not run.active and run.finished_at is not None
    assert (run.total, run.checked, run.drifted, run.errors) == (12, 12, 0, 0)
    # Per identity: the identity, its credentials, one list of its role assignments
    # ($filter=principalId eq) for the subscription: 3 reads, not one per assignment.
    reads = arm_reads(sandbox, since)
    assert len(reads) == run.reads == 12 * 3
    assert sum("roleAssignments" in r["path"] for r in reads) == 12
    assert run.throttled == 0 and all(r["status"] == 200 for r in reads)
    # Paced: after the burst of 3, 33 reads at 10/s take at least 3.3 s.
    assert elapsed >= 3.2
    assert run.batches >= 3  # spread over batches of ~1 s, the cursor carried between them
    assert [r["status"] for r in queue.results[:-1]] == ["handed on"] * (len(queue.results) - 1)
    assert queue.results[-1]["status"] == "finished"
    states = set(Identity.objects.filter(pk__in=pks).values_list("drift_state", flat=True))
    assert states == {DriftState.IN_SYNC}


def test_429s_are_waited_out_for_their_retry_after_and_counted(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    make_ready(approved_request, 4)
    # The portal believes in a faster bound than ARM grants: ARM answers 429 with Retry-After.
    sandbox.emulator.config(read_bucket_capacity=2, read_bucket_refill_per_second=2)
    since = len(sandbox.emulator.requests())
    queue = InlineQueue()
    with override_settings(DRIFT_READS_PER_SECOND=100, DRIFT_READ_BURST=100, DRIFT_READS_RESERVE=0):
        started = time.monotonic()
        run_tick(enqueue_batch=queue)
        queue.drain()
        elapsed = time.monotonic() - started

    run = DriftRun.objects.get()
    assert (run.checked, run.errors) == (4, 0)
    reads = arm_reads(sandbox, since)
    throttled = [r for r in reads if r["status"] == 429]
    assert throttled and run.throttled == len(throttled)
    assert run.reads == len(reads)
    # Each 429 (Retry-After: 1) held the subscription's reads for a second, one after another.
    assert elapsed >= 0.95 * len(throttled)


def test_a_long_retry_after_hands_the_run_on_with_a_countdown(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    make_ready(approved_request, 2)
    sandbox.emulator.config(read_bucket_capacity=1, read_bucket_refill_per_second=0.5)
    queue = InlineQueue()
    with override_settings(
        DRIFT_READS_PER_SECOND=100, DRIFT_READS_RESERVE=0, DRIFT_MAX_INLINE_WAIT_SECONDS=1
    ):
        run_tick(enqueue_batch=queue)
        run_id, ticket, _ = queue.messages.pop()
        first = run_batch(run_id, ticket, enqueue_batch=queue)
        assert first["status"] == "handed on"
        assert first["countdown"] == 2  # Retry-After of an empty bucket refilled at 0.5/s
        assert queue.messages[-1][2] == 2
        # ARM's bucket back to normal: the next batch continues from the cursor.
        sandbox.emulator.config(read_bucket_capacity=None, read_bucket_refill_per_second=None)
        queue.drain()
    run = DriftRun.objects.get()
    assert (run.checked, run.errors, run.active) == (2, 0, False)


def test_a_stale_message_does_not_start_a_second_chain_of_batches(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    make_ready(approved_request, 2)
    queue = InlineQueue()
    run_tick(enqueue_batch=queue)
    run_id, ticket, _ = queue.messages.pop()
    assert run_batch(run_id, "stale-ticket", enqueue_batch=queue)["status"] == "not mine"
    assert run_batch(run_id, ticket, enqueue_batch=queue)["status"] == "finished"
    assert run_batch(run_id, ticket, enqueue_batch=queue)["status"] == "not mine"
    # The next run waits for the interval from the last start.
    assert run_tick(enqueue_batch=queue)["status"] == "idle"
    with override_settings(DRIFT_CHECK_INTERVAL_SECONDS=0):
        assert run_tick(enqueue_batch=queue)["status"] == "started"
    assert DriftRun.objects.count() == 2
