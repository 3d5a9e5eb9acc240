"""A real Celery worker process consumes the queue and writes to the test database."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts.models import WorkerHeartbeat
from portal.tasks import heartbeat
from tests.support.services import postgres_or_missing, wait_until
from tests.support.workers import WorkerFactory, make_broker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("broker_kind", ["embedded", "redis"])
def test_worker_process_runs_a_task_that_writes_to_the_database(
    broker_kind: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    if broker_kind == "redis":
        # The production pairing: Redis broker, PostgreSQL database.
        postgres_or_missing()
    broker = make_broker(broker_kind, tmp_path)
    worker = start_worker(broker)
    assert not WorkerHeartbeat.objects.exists()

    broker.send(heartbeat)

    written = wait_until(WorkerHeartbeat.objects.exists, timeout=60, interval=0.25)
    assert written, f"no heartbeat row; worker log:\n{worker.log_tail()}"
    assert worker.alive()
