"""kill -9 of *every* pool process of a worker at once (what the kernel's OOM killer does).

The worker's main process survives and must neither wedge nor hide it: the task that was
running is redelivered and finishes, later periodic tasks (heartbeat, sweeper) run again, and
the worker's liveness file keeps being touched, so a supervisor that watches it would leave the
worker alone. Run on both brokers: the embedded filesystem transport and Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client, override_settings

from accounts.models import WorkerHeartbeat
from identities.models import IdentityRequest, RequestStatus
from provisioning.models import ProvisioningStep, StepStatus
from tests.faults.consistency import azure_disagreements, ready_request_disagreements
from tests.faults.helpers import (
    FINAL,
    approve_new,
    pool_children,
    statuses,
    wait_all_final,
    wait_worker_ready,
)
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import REPO_ROOT, postgres_or_missing, wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def latest_heartbeat() -> float:
    latest = WorkerHeartbeat.objects.order_by("-seen_at").first()
    return latest.seen_at.timestamp() if latest else 0.0


@pytest.mark.parametrize("kind", ["embedded", "redis"])
def test_killing_every_pool_process_mid_task_neither_wedges_nor_hides_the_worker(
    kind: str,
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    start_beat: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    postgres_or_missing()
    broker = make_broker(kind, tmp_path)
    use_broker(broker)
    sandbox.emulator.config(latency_ms=1500)
    liveness = tmp_path / "worker-alive"
    env = {
        **sandbox.worker_env,
        "VERIFY_AFTER_PROVISIONING": "0",
        "HEARTBEAT_INTERVAL_SECONDS": "1",
        "SWEEPER_INTERVAL_SECONDS": "3600",  # the redelivery alone must rescue the request
        "WORKER_LIVENESS_FILE": str(liveness),
        "WORKER_LIVENESS_INTERVAL_SECONDS": "1",
    }
    worker = start_worker(broker, concurrency=2, **env)
    wait_worker_ready(worker)
    start_beat(broker, **env)
    assert wait_until(lambda: latest_heartbeat() > 0, timeout=30), worker.log_tail()

    identity_request = approve_new(approved_request, 0, roles=2)
    started = wait_until(
        lambda: ProvisioningStep.objects.filter(
            identity_request=identity_request, status=StepStatus.RUNNING
        ).exists(),
        timeout=30,
        interval=0.02,
    )
    assert started, worker.log_tail()
    children = pool_children(worker.pid)
    assert len(children) == 2
    for child in children:
        os.kill(child, signal.SIGKILL)
    killed_at = time.time()
    assert statuses([identity_request.pk])[identity_request.pk] == RequestStatus.PROVISIONING

    final = wait_all_final([identity_request.pk], timeout=90)
    assert final == {identity_request.pk: RequestStatus.READY}, worker.log_tail(120)
    # Heartbeats (one a second from beat) are consumed again after the kill.
    beating = wait_until(lambda: latest_heartbeat() > killed_at + 2, timeout=30)
    assert beating, worker.log_tail(120)
    assert worker.alive(), worker.log_tail()
    # The liveness file is fresh while the worker consumes.
    assert wait_until(
        lambda: liveness.exists() and liveness.stat().st_mtime > killed_at + 2, timeout=30
    ), worker.log_tail(120)
    assert probe(liveness).returncode == 0
    problems = azure_disagreements(sandbox) + ready_request_disagreements(
        IdentityRequest.objects.get(pk=identity_request.pk)
    )
    assert problems == []


def probe(liveness: Path) -> subprocess.CompletedProcess[str]:
    """The liveness probe a supervisor runs: `python -m portal.worker_probe`."""
    env = {**os.environ, "WORKER_LIVENESS_FILE": str(liveness)}
    return subprocess.run(
        [sys.executable, "-m", "portal.worker_probe", "--max-age", "5"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("kind", ["embedded", "redis"])
def test_a_pool_that_runs_nothing_fails_the_liveness_probe_and_the_workers_health(
    kind: str,
    sandbox: Sandbox,
    start_worker: WorkerFactory,
    start_beat: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    """Whatever wedges a pool (here: its processes frozen with SIGSTOP), the main process goes
    on answering pings; the liveness file and the heartbeat go stale, and both probes say so."""
    postgres_or_missing()
    broker = make_broker(kind, tmp_path)
    use_broker(broker)
    liveness = tmp_path / "worker-alive"
    env = {
        **sandbox.worker_env,
        "HEARTBEAT_INTERVAL_SECONDS": "1",
        "WORKER_LIVENESS_FILE": str(liveness),
        "WORKER_LIVENESS_INTERVAL_SECONDS": "1",
    }
    worker = start_worker(broker, concurrency=2, **env)
    wait_worker_ready(worker)
    start_beat(broker, **env)
    assert wait_until(lambda: latest_heartbeat() > 0, timeout=30), worker.log_tail()
    assert wait_until(lambda: probe(liveness).returncode == 0, timeout=15), worker.log_tail()
    with override_settings(WORKER_HEARTBEAT_STALE_SECONDS=4):
        assert Client().get("/healthz/workers").status_code == 200

        children = pool_children(worker.pid)
        for child in children:
            os.kill(child, signal.SIGSTOP)
        try:
            stale = wait_until(lambda: probe(liveness).returncode == 1, timeout=30)
            response = Client().get("/healthz/workers")
            ready = Client().get("/readyz")
        finally:
            for child in children:
                os.kill(child, signal.SIGCONT)

        assert stale, worker.log_tail()
        assert worker.alive()
        assert response.status_code == 503, response.content
        assert response.json()["status"] == "stale"
        # A web replica stays ready: it can serve; the workers' state is reported, not judged.
        assert ready.status_code == 200
        assert ready.json()["workers"]["status"] == "stale"
        # Thawed, the pool runs jobs again and the probe passes again.
        assert wait_until(lambda: probe(liveness).returncode == 0, timeout=30), worker.log_tail()


@pytest.mark.parametrize("kind", ["embedded", "redis"])
def test_a_pool_busy_with_long_tasks_stays_alive_for_the_probe(
    kind: str,
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    """Every pool process running a task (here the only one, for longer than the probe's max
    age) is not a wedge: the no-op job waits its turn and the liveness file is still touched."""
    postgres_or_missing()
    broker = make_broker(kind, tmp_path)
    use_broker(broker)
    sandbox.emulator.config(latency_ms=3000)  # a few round trips: about 10 s of provisioning
    liveness = tmp_path / "worker-alive"
    env = {
        **sandbox.worker_env,
        "VERIFY_AFTER_PROVISIONING": "0",
        "WORKER_LIVENESS_FILE": str(liveness),
        "WORKER_LIVENESS_INTERVAL_SECONDS": "1",
    }
    worker = start_worker(broker, concurrency=1, **env)
    wait_worker_ready(worker)
    assert wait_until(lambda: probe(liveness).returncode == 0, timeout=15), worker.log_tail()

    identity_request = approve_new(approved_request, 0, roles=2)
    began = time.monotonic()
    failures = []
    while statuses([identity_request.pk])[identity_request.pk] not in FINAL:
        assert time.monotonic() - began < 90, worker.log_tail()
        result = probe(liveness)
        if result.returncode != 0:
            failures.append(result.stderr.strip())
        time.sleep(1)

    assert time.monotonic() - began > 7  # the task outlasted the probe's max age (5 s)
    assert failures == []
