"""The drift run on real worker processes: its own queue and worker, a kill -9 mid-run, and
provisioning finishing while a long run reads.

The run is scaled down to seconds: ARM's read bucket (emulator knobs) and the portal's pacing
at a few reads per second, batches of 2 s, a lease of 3 s.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import override_settings

from identities.models import IdentityRequest
from provisioning.drift import run_tick
from provisioning.models import DriftRun
from provisioning.tasks import drift_batch
from tests.faults.helpers import approve_new, wait_worker_ready
from tests.integration.test_drift_runs import make_ready
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]
READS_PER_SECOND = 4
DRIFT_ENV = {
    "DRIFT_READS_PER_SECOND": str(READS_PER_SECOND),
    "DRIFT_READ_BURST": "2",
    "DRIFT_READS_RESERVE": "1",
    "DRIFT_BATCH_SECONDS": "2",
    "DRIFT_LEASE_SECONDS": "3",
    "DRIFT_CHUNK": "3",
    "VERIFY_AFTER_PROVISIONING": "0",
}


def drift_queue(broker: Broker) -> Broker:
    """The drift queue beside `broker`'s (settings: CELERY_DRIFT_QUEUE = <queue>-drift)."""
    return dataclasses.replace(broker, queue=f"{broker.queue}-drift")


def tick(drift: Broker) -> str:
    """What beat's check_drift does, from here: batches go to the drift queue."""

    def enqueue(run_id: int, ticket: str, countdown: float) -> None:
        drift.send(drift_batch, run_id, ticket)

    with override_settings(DRIFT_LEASE_SECONDS=int(DRIFT_ENV["DRIFT_LEASE_SECONDS"])):
        return str(run_tick(enqueue_batch=enqueue)["status"])


def test_a_run_continues_from_its_cursor_after_its_worker_is_killed(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    tmp_path: Path,
) -> None:
    make_ready(approved_request, 9)
    sandbox.emulator.config(read_bucket_capacity=4, read_bucket_refill_per_second=READS_PER_SECOND)
    broker = make_broker("redis", tmp_path)
    drift = drift_queue(broker)
    env = {**sandbox.worker_env, **DRIFT_ENV}
    worker = start_worker(drift, concurrency=1, **env)
    wait_worker_ready(worker)

    assert tick(drift) == "started"
    run = DriftRun.objects.get()
    assert wait_until(lambda: DriftRun.objects.get().cursor > 0, timeout=30, interval=0.1)
    worker.kill()  # kill -9 mid-run: the batch's lease is no longer renewed
    stopped_at = DriftRun.objects.get().cursor
    replacement = start_worker(drift, concurrency=1, **env)
    wait_worker_ready(replacement)

    statuses: list[str] = []

    def finished() -> bool:
        statuses.append(tick(drift))
        return not DriftRun.objects.get().active

    assert wait_until(finished, timeout=90, interval=0.5), replacement.log_tail()
    run.refresh_from_db()
    assert "resumed" in statuses  # the tick handed the stalled run out again
    assert stopped_at < run.cursor
    assert (run.total, run.checked, run.errors) == (9, 9, 0)
    assert DriftRun.objects.count() == 1  # continued, not started over


def test_provisioning_is_not_delayed_by_a_drift_run_in_progress(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    make_ready(approved_request, 12)  # 36 reads at 4/s: a run of about 9 s
    sandbox.emulator.config(read_bucket_capacity=4, read_bucket_refill_per_second=READS_PER_SECOND)
    broker = make_broker("redis", tmp_path)
    drift = drift_queue(broker)
    env = {**sandbox.worker_env, **DRIFT_ENV}
    workers = [
        start_worker(broker, concurrency=1, **env),
        start_worker(drift, concurrency=1, **env),
    ]
    for worker in workers:
        wait_worker_ready(worker)
    use_broker(broker)

    assert tick(drift) == "started"
    assert wait_until(lambda: DriftRun.objects.get().cursor > 0, timeout=30, interval=0.1)
    started = time.monotonic()
    identity_request = approve_new(approved_request, 100, roles=3)
    ready = wait_until(
        lambda: IdentityRequest.objects.get(pk=identity_request.pk).status == "ready",
        timeout=30,
        interval=0.05,
    )
    took = time.monotonic() - started

    assert ready, workers[0].log_tail()
    run = DriftRun.objects.get()
    assert run.active, "the drift run ended before provisioning finished: nothing was shown"
    assert took < 5, f"provisioning took {took:.1f}s beside the drift run"
    assert wait_until(lambda: tick(drift) and not DriftRun.objects.get().active, timeout=60)
