"""Worker liveness: a file the worker touches only while its pool really runs jobs, and the probe
that a supervisor (Kubernetes `livenessProbe`, Docker `healthcheck`) runs against it.

`celery inspect ping` is answered by the worker's main process, which keeps answering (and keeps
taking messages from the broker) when no pool process can run a task any more. So the main
process hands its pool a no-op job every WORKER_LIVENESS_INTERVAL_SECONDS and touches
WORKER_LIVENESS_FILE when a pool process has run it. While every pool process is busy with a task
the no-op waits its turn; then the file is touched as long as each of those tasks started within
the task time limit (which ends them). A wedged pool stops touching the file, and the probe
(`python -m portal.worker_probe`) fails once the file is older than
WORKER_LIVENESS_MAX_AGE_SECONDS.

The tick lives on the worker's timer, which Celery clears when the broker connection is lost
(celery/worker/loops.py, `asynloop`: "All hub timers are re-registered during
blueprint.start()"), and then restarts the consumer's blueprint. So the tick is a step of the
*consumer* blueprint: scheduled on every consumer start, cancelled on every stop, one at a time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()  # updates the modification time the probe reads


def liveness_ping() -> int:
    """The no-op job: run in a pool process, it proves that process takes jobs."""
    return os.getpid()


class PoolLiveness(bootsteps.StartStopStep):
    """Touch the liveness file while the pool runs jobs (see the module docstring).

    A consumer step: Celery starts it each time the consumer (re)starts, after a broker
    reconnect too, and stops it before a restart, so exactly one tick is scheduled at a time.
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        from django.conf import settings

        super().__init__(parent, **kwargs)
        self.path = Path(settings.WORKER_LIVENESS_FILE)
        self.interval = float(settings.WORKER_LIVENESS_INTERVAL_SECONDS)
        self.time_limit = float(settings.CELERY_TASK_TIME_LIMIT)
        self.consumer: Any = None
        self.ping_sent_at: float | None = None
        self.timer_entry: Any = None
        # The tick runs on the timer (the event loop, or the timer thread of a worker without
        # one); the lock makes a second tick that somehow overlaps a running one a no-op.
        self.ticking = threading.Lock()

    def start(self, parent: Any) -> None:
        self.consumer = parent
        self._cancel()  # never two entries: a start without a stop before it replaces the tick
        # A reconnect may have flushed the no-op in flight with the old connection's state:
        # send a fresh one (a duplicate is harmless, only a pong touches the file).
        self.ping_sent_at = None
        # The first tick comes after one interval: the asynchronous pool (Redis) cannot take a
        # job before the consumer's event loop has started.
        self.timer_entry = parent.timer.call_repeatedly(self.interval, self.tick, priority=10)

    def stop(self, parent: Any) -> None:
        self._cancel()

    def shutdown(self, parent: Any) -> None:
        self._cancel()

    def _cancel(self) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()  # also stops an entry the timer already dropped
            self.timer_entry = None

    def tick(self) -> None:
        if not self.ticking.acquire(blocking=False):
            return
        try:
            self._tick()
        finally:
            self.ticking.release()

    def _tick(self) -> None:
        pool = getattr(self.consumer.pool, "_pool", None)
        if pool is None or getattr(pool, "_quick_put", None) is None:
            return  # not started yet, or being restarted
        if self._busy_within_time_limit(pool):
            touch(self.path)
        now = time.monotonic()
        # One no-op in flight at a time; another after a long silence, in case the pool lost
        # the first without a word (only a pong touches the file, so resending hides nothing).
        if self.ping_sent_at is None or now - self.ping_sent_at > 3 * self.interval + 30:
            self.ping_sent_at = now
            # waitforslot=False: never block the timer behind a full pool.
            pool.apply_async(
                liveness_ping,
                callback=self._pong,
                error_callback=self._lost,
                waitforslot=False,
            )

    def _pong(self, _result: Any) -> None:
        self.ping_sent_at = None
        touch(self.path)

    def _lost(self, _error: Any) -> None:
        self.ping_sent_at = None  # the process running it died: send another on the next tick

    def _busy_within_time_limit(self, pool: Any) -> bool:
        """Every pool process runs a task accepted less than the task time limit ago."""
        # Pool processes stamp the time they accepted a job with time.monotonic(), which on
        # Linux is one clock for every process of the machine.
        now = time.monotonic()
        busy = {
            job._worker_pid
            for job in list(pool._cache.values())
            if job._accepted
            and not job.ready()
            and job._time_accepted is not None
            and now - job._time_accepted < self.time_limit
        }
        pids = {process.pid for process in list(pool._pool)}
        return bool(pids) and pids <= busy
