"""The engine's thread pool: one per process, whose threads keep their database connections.

The engine's critical path is two ARM round trips because the FIC and every role assignment are
written at once from these threads; each thread drops connections past CONN_MAX_AGE.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.db import close_old_connections, connections

from provisioning.errors import GatewayError

# A phase's writes all start at once: a new identity with 20 roles has 21 (its FIC and the
# roles); the threads only wait on ARM, their bookkeeping is done by the caller.
MAX_PARALLEL_WRITES = 32

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """One long-lived pool per process (created after a prefork worker forks): its threads keep
    their database connections between runs, as CONN_MAX_AGE allows."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=MAX_PARALLEL_WRITES, thread_name_prefix="reconcile"
            )
        return _pool


def pool_shutdown() -> None:
    """Close every pool thread's DB connections and stop the pool (tests, before dropping the
    test database). A barrier makes each thread run exactly one closing task."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    threads = len(pool._threads)
    if threads:
        barrier = threading.Barrier(threads)

        def close() -> None:
            barrier.wait(timeout=30)
            connections.close_all()

        for future in [pool.submit(close) for _ in range(threads)]:
            future.result(timeout=60)
    pool.shutdown(wait=True)


def _in_thread(function: Callable[[], Any]) -> Callable[[], Any]:
    """Pool threads reuse their DB connections; drop those past CONN_MAX_AGE or broken."""

    def run() -> Any:
        close_old_connections()
        try:
            return function()
        finally:
            close_old_connections()

    return run


def start_concurrently(tasks: Sequence[Callable[[], Any]]) -> list[Future[Any]]:
    """Start every task on the pool at once and return at once (the caller waits)."""
    return [_executor().submit(_in_thread(task)) for task in tasks]


def run_concurrently(tasks: Sequence[Callable[[], Any]]) -> list[GatewayError]:
    """Run every task, wait for all of them, and return the gateway errors they raised."""
    if not tasks:
        return []
    errors: list[GatewayError] = []
    futures = start_concurrently(tasks)
    for future in futures:
        error = future.exception()
        if isinstance(error, GatewayError):
            errors.append(error)
        elif error is not None:
            raise error
    return errors
