"""The worker's liveness file after the broker comes back.

On a lost broker connection Celery restarts the worker's consumer and clears the event loop's
timer (celery/worker/loops.py, asynloop), so a tick scheduled once at worker start never fires
again: the file goes stale and a supervisor would kill every worker after any Redis blip. A real
worker on a redis-server of the test's own; that server is restarted; the file is touched again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.faults.helpers import wait_worker_ready
from tests.faults.test_pool_wipeout import probe
from tests.support.redis_server import RedisServer
from tests.support.services import ManagedProcess, wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [pytest.mark.fault, pytest.mark.django_db(transaction=True)]


def modified(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def connected(worker: ManagedProcess, times: int) -> bool:
    """The worker logged a broker connection `times` times (its start, then each reconnect)."""
    return worker.log_tail(400).count("Connected to redis://") >= times


def touched_after(path: Path, moment: float) -> bool:
    return modified(path) > moment


def test_the_liveness_file_is_touched_again_after_a_redis_restart(
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    private_redis: RedisServer,
    tmp_path: Path,
) -> None:
    broker = make_broker("redis", tmp_path, url=private_redis.url(0))
    broker.env["CACHE_URL"] = private_redis.url(1)
    use_broker(broker)
    liveness = tmp_path / "worker-alive"
    env = {"WORKER_LIVENESS_FILE": str(liveness), "WORKER_LIVENESS_INTERVAL_SECONDS": "1"}
    worker = start_worker(broker, concurrency=1, **env)
    wait_worker_ready(worker)
    assert wait_until(lambda: probe(liveness).returncode == 0, timeout=20), worker.log_tail()

    for restart in range(2):  # the second proves the rescheduled tick survives a restart too
        private_redis.kill()
        time.sleep(2)
        private_redis.start()
        back_at = time.time()
        reconnected = wait_until(partial(connected, worker, restart + 2), timeout=30)
        assert reconnected, worker.log_tail()
        # Ticks once a second: fresh again within a few seconds of the reconnect.
        fresh = wait_until(partial(touched_after, liveness, back_at + 1), timeout=20, interval=0.2)
        assert fresh, f"liveness file stale after restart {restart + 1}\n{worker.log_tail()}"
        assert worker.alive(), worker.log_tail()
    assert probe(liveness).returncode == 0
