"""Cross-worker locks: Azure refuses concurrent FIC writes on one identity, so we serialize them.

With Redis configured the lock is a Redis lock (works across machines); on the embedded default
it is an fcntl lock on a file under var/locks (works across processes on one machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import redis
from django.conf import settings

from provisioning.errors import TransientError

LOCK_TTL_SECONDS = 120  # longer than any single FIC write incl. SDK retries; freed on crash


@lru_cache(maxsize=2)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)


def _lock_name(key: str) -> str:
    return "wip:lock:" + hashlib.sha256(key.lower().encode()).hexdigest()[:32]


@contextlib.contextmanager
def serialized(key: str, *, timeout: float = 300) -> Iterator[None]:
    """Hold the named lock for the block; TransientError if it can't be had within `timeout`."""
    name = _lock_name(key)
    if settings.REDIS_URL:
        lock = _redis(settings.REDIS_URL).lock(
            name, timeout=LOCK_TTL_SECONDS, blocking_timeout=timeout
        )
        if not lock.acquire():
            raise TransientError(f"timed out waiting for the write lock on {key}", code="LockBusy")
        try:
            yield
        finally:
            with contextlib.suppress(redis.exceptions.LockError):
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
