"""The prefork pool of the portal's Celery workers, made safe against kill -9 of pool processes.

Why: on a transport without an event loop (the embedded filesystem broker) Celery runs billiard's
blocking pool, whose processes share one job pipe guarded by a POSIX semaphore. An idle pool
process waits for its next job *holding* that semaphore. When the kernel kills it (OOM killer,
kill -9) the semaphore is never released, every replacement process blocks on it forever, and
the worker wedges: its main process still takes messages from the broker and answers pings, but
no task runs again. Here those semaphores are replaced by POSIX record locks (fcntl), which the
kernel releases when their holder dies. (On Redis Celery uses its asynchronous pool, whose
processes have pipes of their own and no shared lock; the same class serves both.) The blocking
pool's behaviour is billiard's, reported upstream as celery/billiard#104; billiard 4.3.2 still
guards the pipes with semaphores, so check whether this is still needed when upgrading it.
"""

from __future__ import annotations

import fcntl
import tempfile
from types import TracebackType
from typing import Any

from billiard.pool import Pool as BillardBlockingPool
from celery.concurrency.prefork import TaskPool as PreforkTaskPool


class ProcessLock:
    """A mutex between processes that the kernel frees when the holder dies.

    A POSIX record lock on a private temporary file inherited by every pool process. Record
    locks belong to a process, so they exclude other processes, not threads of the same one;
    each lock here is taken by one thread per process (the pool process's main loop, or the
    main process's result handler), so that is enough.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the pool

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        # billiard only ever blocks without a timeout; a timeout is treated as a try.
        if block and timeout is None:
            fcntl.lockf(self._file.fileno(), fcntl.LOCK_EX)
            return True
        try:
            fcntl.lockf(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def release(self) -> None:
        fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class BlockingPool(BillardBlockingPool):
    """billiard's blocking pool with its job and result pipes guarded by ProcessLocks."""

    def _setup_queues(self) -> None:
        super()._setup_queues()  # type: ignore[misc]  # billiard's stubs leave the internals out
        pool: Any = self
        for queue in (pool._inqueue, pool._outqueue):
            queue._rlock = ProcessLock()
            queue._wlock = ProcessLock()


class TaskPool(PreforkTaskPool):
    """Celery's prefork pool (`worker_pool = "portal.worker_pool:TaskPool"`), using the blocking
    pool above when the transport has no event loop."""

    BlockingPool = BlockingPool
