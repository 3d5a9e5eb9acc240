"""Waiting for a request to change (the API's `Prefer: wait` long-poll) without holding a
database connection: one indexed primary-key read per poll interval, the connection handed back
between reads, the thread asleep in between. The thread is held all along, so `wait_slot` caps
how many waits run at once in a process and per user."""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.db.models import Count

from identities.filelock import folder_lock
from identities.models import IdentityRequest, shown_request_status

# A pipeline learns of a change within this; each waiting client costs one cheap query per
# interval (a primary-key lookup with a count of its decisions).
POLL_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class RequestState:
    """The state of a request a reader has seen: its status, when it last moved, how many
    decisions (approvals, rejections) it has, and the status a person reads (`lifecycle_status`:
    a ready request turns "decommissioned" when its identity does, without moving itself). Any
    change to these is a new `etag`."""

    status: str
    updated_at: datetime
    decisions: int
    shown: str

    @property
    def etag(self) -> str:
        digest = hashlib.sha256(
            f"{self.updated_at.isoformat()}|{self.decisions}|{self.shown}".encode()
        )
        # Weak: the same revision is the same request state, not the same bytes (the body's
        # links follow the host it was asked on).
        return f'W/"{self.status}.{digest.hexdigest()[:16]}"'


def state_of(identity_request: IdentityRequest) -> RequestState:
    """The revision of a request read through `identity_requests_visible_to` (its approvals are
    prefetched, so this costs no query)."""
    return RequestState(
        status=identity_request.status,
        updated_at=identity_request.updated_at,
        decisions=len(identity_request.approvals.all()),
        shown=identity_request.shown_status,
    )


def identity_request_state(pk: int) -> RequestState | None:
    """The request's revision now, in one query; None once it is gone. No visibility check:
    callers have checked that the user may see `pk` before they wait on it."""
    row = (
        IdentityRequest.objects.filter(pk=pk)
        .annotate(decision_count=Count("approvals"))
        .values_list("status", "updated_at", "decision_count", "kind", "identity__status")
        .first()
    )
    if row is None:
        return None
    status, updated_at, decisions, kind, identity_status = row
    return RequestState(
        status=status,
        updated_at=updated_at,
        decisions=decisions,
        shown=shown_request_status(status=status, kind=kind, identity_status=identity_status),
    )


def identity_request_wait(
    *,
    pk: int,
    unchanged: Callable[[RequestState], bool],
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RequestState | None:
    """Poll the request's revision until `unchanged(revision)` is false or `timeout` seconds
    have passed; return the last revision read (None: the request is gone). Between reads the
    database connection is closed (outside a transaction), so a thousand waiting pipelines
    hold a thousand sleeping threads, not a thousand connections."""
    deadline = clock() + timeout
    revision = identity_request_state(pk)
    while revision is not None and unchanged(revision):
        remaining = deadline - clock()
        if remaining <= 0:
            break
        _release_connection()
        sleep(min(POLL_INTERVAL_SECONDS, remaining))
        revision = identity_request_state(pk)
    return revision


def _release_connection() -> None:
    # Inside a transaction (a test's, or ATOMIC_REQUESTS, which we do not use) closing would
    # break it; the connection is then the transaction's anyway.
    if not connection.in_atomic_block:
        connection.close()


# --- how many may wait at once ------------------------------------------------------------------
# Each waiting call holds a web thread for up to its wait; the rate limit alone let one caller
# hold every thread of the web tier. A wait beyond either cap is not waited: the caller gets the
# request as it is, at once (RFC 7240 lets a server ignore a preference), and polls again.

# A user's slot is a lease in the default cache (the folder this machine's processes share, or
# Redis with CACHE_URL, as the API throttles), given back when the wait ends. A process killed
# mid-wait (OOM, gunicorn's worker timeout) never runs its `finally`: its lease lapses on its
# own, this long after the wait it was taken for would have ended.
LEASE_SLACK_SECONDS = 15.0
WAITER_KEY = "long_poll_user_%s"
LOCK_FILE = "long_poll.lock"


class _ProcessWaits:
    """The waits running in this process: the threads they hold are this process's (a gunicorn
    worker's), so they are counted here, not in the cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0

    def take(self, limit: int) -> bool:
        with self._lock:
            if self.running >= limit:
                return False
            self.running += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.running -= 1


_process_waits = _ProcessWaits()


def waits_running() -> int:
    """How many waits hold a thread of this process now."""
    return _process_waits.running


@contextmanager
def wait_slot(*, waiter: int, timeout: float) -> Iterator[bool]:
    """Room for a wait of up to `timeout` seconds by user `waiter`: True while the slot is
    held; False (do not wait) when API_WAIT_MAX_PER_PROCESS waits already run in this process
    or API_WAIT_MAX_PER_PRINCIPAL of the user's run in any process sharing the cache. The slot
    is given back however the block ends."""
    if not _process_waits.take(settings.API_WAIT_MAX_PER_PROCESS):
        yield False
        return
    try:
        key = WAITER_KEY % waiter
        lease = _lease_take(
            key,
            limit=settings.API_WAIT_MAX_PER_PRINCIPAL,
            seconds=timeout + LEASE_SLACK_SECONDS,
        )
        try:
            yield lease is not None
        finally:
            if lease is not None:
                _lease_drop(key, lease)
    finally:
        _process_waits.give_back()


# KEYS[1]: a user's leases, a sorted set of lease ids scored with the time each lapses (Redis's
# clock, the one every machine shares). ARGV: the limit, the lease's seconds, its id. One script:
# Redis runs nothing else in between, so two machines cannot both take the last slot.
_TAKE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local seconds = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + seconds, ARGV[3])
if redis.call('TTL', KEYS[1]) < seconds then
  redis.call('EXPIRE', KEYS[1], math.ceil(seconds))
end
return 1
"""
_local_lock = threading.Lock()


def _lease_take(key: str, *, limit: int, seconds: float) -> str | None:
    """A new lease in the set under `key`, lapsing in `seconds`, unless `limit` leases that
    have not lapsed are there already; its id (None: refused)."""
    cache = caches[DEFAULT_CACHE_ALIAS]
    lease = uuid.uuid4().hex
    if isinstance(cache, RedisCache):
        # Django keeps its Redis client private (RedisCacheClient.get_client), as api.throttling
        # notes; the key carries the cache's prefix and version like its own keys.
        client = cache._cache.get_client(write=True)
        taken = client.eval(
            _TAKE_SCRIPT, 1, cache.make_and_validate_key(key), limit, seconds, lease
        )
        return lease if int(taken) else None
    with _cache_lock(cache):
        now = time.time()
        leases = {held: until for held, until in cache.get(key, {}).items() if until > now}
        if len(leases) >= limit:
            return None
        leases[lease] = now + seconds
        cache.set(key, leases, math.ceil(max(leases.values()) - now))
    return lease


def _lease_drop(key: str, lease: str) -> None:
    cache = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(cache, RedisCache):
        cache._cache.get_client(write=True).zrem(cache.make_and_validate_key(key), lease)
        return
    with _cache_lock(cache):
        leases: dict[str, float] = cache.get(key, {})
        if leases.pop(lease, None) is None:
            return
        now = time.time()
        if any(until > now for until in leases.values()):
            cache.set(key, leases, math.ceil(max(leases.values()) - now))
        else:
            cache.delete(key)


def _cache_lock(cache: BaseCache) -> AbstractContextManager[Any]:
    """A read and a write of the lease set with no other in between: on the file cache an
    exclusive lock on a file in its folder (every process of the machine shares it), on any
    other cache a lock of this process."""
    if isinstance(cache, FileBasedCache):
        return folder_lock(cache._dir, LOCK_FILE)  # type: ignore[attr-defined]  # FileBasedCache
    return _local_lock
