"""Cross-worker locks: Azure refuses concurrent FIC writes on one identity, so we serialize them.

With Redis configured the lock is a Redis lock (works across machines); on the embedded default
it is an fcntl lock on a file under var/locks (works across processes on one machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import redis
from django.conf import settings

from provisioning.errors import TransientError

# A holder renews its lock every third of the TTL for as long as it runs, so a write may take
# any time; a holder killed with -9 stops renewing and frees the lock within the TTL. (A fixed
# TTL long enough for the slowest write kept FIC writes on that identity stalled for minutes
# after every worker crash.) Should a renewal come too late, two writes may overlap: Azure
# answers the second with ConcurrentFederatedIdentityCredentialsWrites..., which is retried.
LOCK_TTL_SECONDS = 4


@lru_cache(maxsize=2)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)


def _lock_name(key: str) -> str:
    return "wip:lock:" + hashlib.sha256(key.lower().encode()).hexdigest()[:32]


def _renew(lock: redis.lock.Lock, done: threading.Event, ttl: float) -> None:
    """Keep the lock alive until `done`; give up quietly if it was lost (see LOCK_TTL_SECONDS)."""
    while not done.wait(ttl / 3):
        try:
            lock.reacquire()
        except redis.exceptions.RedisError:  # LockNotOwnedError, or Redis unreachable
            return


@contextlib.contextmanager
def serialized(key: str, *, timeout: float = 300, ttl: float = LOCK_TTL_SECONDS) -> Iterator[None]:
    """Hold the named lock for the block; TransientError if it can't be had within `timeout`."""
    name = _lock_name(key)
    if settings.REDIS_URL:
        # Not thread-local: the renewing thread must see the token this thread acquired.
        lock = _redis(settings.REDIS_URL).lock(
            name, timeout=ttl, blocking_timeout=timeout, thread_local=False
        )
        try:
            acquired = lock.acquire()
        except redis.exceptions.RedisError as error:
            # Redis restarting or unreachable: nothing was written yet, so the step waits it
            # out (for the throttling budget) instead of crashing the task, which left the
            # step running until the sweeper stepped in.
            raise TransientError(
                f"the write lock on {key} is unavailable: Redis did not answer "
                f"({type(error).__name__})",
                code="LockUnavailable",
                wait_out=True,
            ) from error
        if not acquired:
            raise TransientError(f"timed out waiting for the write lock on {key}", code="LockBusy")
        done = threading.Event()
        renewer = threading.Thread(target=_renew, args=(lock, done, ttl), daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()
            # Lost (LockError) or Redis gone (the key then expires within the TTL): either way
            # the write in the block is done, and its outcome must not be masked.
            with contextlib.suppress(redis.exceptions.RedisError):
                lock.release()
        return
    folder = Path(settings.VAR_DIR) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TransientError(
                        f"timed out waiting for the write lock on {key}", code="LockBusy"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
