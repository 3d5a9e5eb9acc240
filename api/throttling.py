"""Rate limits per API token, per user and per anonymous client address.

Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] ("token", "user", "anon"), read when a
request is checked so overriding the setting takes effect. A token request counts against its
token and its user, so minting more tokens does not raise a user's limit. Counters live in the
default cache: a folder every process of the machine shares, or Redis with CACHE_URL.

A check reads the counters, decides and writes them back as one atomic step, so concurrent
requests cannot each read the same log and write back one entry between them (a read then a
write, as DRF's own throttles do, let c parallel callers make up to c times the limit):
- on Redis, an optimistic transaction: WATCH the keys, read them, write them in MULTI/EXEC, and
  read again if another request wrote one of them meanwhile (redis.io, "Transactions",
  "Optimistic locking using check-and-set");
- on the file cache, an exclusive lock on a file in its folder (`django.core.files.locks`, the
  lock the file cache takes for its own writes) around the read and the write;
- on any other cache, a lock of this process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from django.core.cache import cache as default_cache
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache
from django.core.files import locks
from django.utils.connection import ConnectionProxy
from redis.exceptions import WatchError
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from api.permissions import request_token

# DRF's spelling of a counter's key and of a rate's period (SimpleRateThrottle.parse_rate).
CACHE_FORMAT = "throttle_%(scope)s_%(ident)s"
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'600/min' -> (600, 60): requests allowed, and the window in seconds."""
    number, period = rate.split("/")
    return int(number), PERIODS[period[0]]


class ApiRateThrottle(BaseThrottle):
    """The token, user and anonymous limits, each DRF's sliding log of request times (the same
    keys, windows and Retry-After as `SimpleRateThrottle`), checked together in one atomic
    update (`update_atomically`): one read of every counter that applies and one write (on
    Redis: WATCH, MGET, then MULTI/SET/EXEC in one pipeline). One DRF throttle class per limit
    read and wrote its own counter: four round trips per token request, about 1 ms of every
    API call, and none of them atomic.

    A limit that refuses does not count the request; the others do (as DRF, which asks every
    throttle). The wait is the longest of the refusing limits'."""

    cache = default_cache

    def __init__(self) -> None:
        self.waits: list[float] = []

    def limits(self, request: Request) -> list[tuple[str, int, int]]:
        """(cache key, requests allowed, window in seconds) of each limit that applies."""
        rates = api_settings.DEFAULT_THROTTLE_RATES
        user = request.user
        signed_in = bool(user and user.is_authenticated)
        token = request_token(request)
        idents = [
            ("token", token.pk if token is not None else None),
            ("user", user.pk if signed_in else None),
            ("anon", None if signed_in else self.get_ident(request)),
        ]
        found = []
        for scope, ident in idents:
            rate = rates.get(scope)
            if ident is not None and rate is not None:
                key = CACHE_FORMAT % {"scope": scope, "ident": ident}
                found.append((key, *parse_rate(str(rate))))
        return found

    def allow_request(self, request: Request, view: Any) -> bool:
        limits = self.limits(request)
        if not limits:
            return True
        self.waits = []

        def decide(stored: dict[str, Any]) -> Writes:
            now = time.time()
            self.waits = []
            counted: Writes = {}
            for key, number, window in limits:
                # Newest first; drop the times that have left the window.
                history = [at for at in stored.get(key, []) if at > now - window]
                if len(history) >= number:
                    self.waits.append(_wait(history, number, window, now))
                else:
                    counted.setdefault(window, {})[key] = [now, *history]
            return counted

        if not update_atomically(self.cache, [key for key, _n, _w in limits], decide):
            # Other requests of this caller kept winning the race: it is sending a burst.
            self.waits = [CONTENDED_WAIT]
        return not self.waits

    def wait(self) -> float | None:
        return max(self.waits) if self.waits else None


def _wait(history: list[float], number: int, window: int, now: float) -> float:
    """SimpleRateThrottle.wait: the rest of the window over the requests it will free (where
    DRF gives no wait, a log longer than a lowered limit, the rest of the window)."""
    remaining = window - (now - history[-1]) if history else window
    available = number - len(history) + 1
    return remaining / available if available > 0 else remaining


# The counters to write, per window (their timeout): {window: {key: log}}.
Writes = dict[int, dict[str, list[float]]]
# Tries of the Redis transaction before the request is refused as part of a burst, and the
# Retry-After it is refused with.
REDIS_ATTEMPTS = 20
CONTENDED_WAIT = 1.0
LOCK_FILE = "throttle.lock"
_process_lock = threading.Lock()


def update_atomically(
    cache: BaseCache, keys: list[str], decide: Callable[[dict[str, Any]], Writes]
) -> bool:
    """Read `keys`, call `decide` with what is stored and write what it returns, with no other
    update of those keys in between; False if Redis kept reporting a concurrent write."""
    if isinstance(cache, ConnectionProxy):  # django.core.cache.cache: the backend behind it
        cache = cache._connections[cache._alias]
    if isinstance(cache, RedisCache):
        return _update_redis(cache, keys, decide)
    lock: AbstractContextManager[Any] = (
        _file_lock(cache) if isinstance(cache, FileBasedCache) else _process_lock
    )
    with lock:
        for window, values in decide(cache.get_many(keys)).items():
            cache.set_many(values, window)
    return True


def _update_redis(
    cache: RedisCache, keys: list[str], decide: Callable[[dict[str, Any]], Writes]
) -> bool:
    # Django's Redis backend keeps its client and serializer private (django/core/cache/
    # backends/redis.py: RedisCacheClient.get_client, ._serializer); keys and values are
    # stored exactly as cache.get/set store them, so both read the same counters.
    backend = cache._cache
    serializer = backend._serializer  # type: ignore[attr-defined]
    stored_keys = [cache.make_and_validate_key(key) for key in keys]
    with backend.get_client(write=True).pipeline() as pipe:
        for _ in range(REDIS_ATTEMPTS):
            try:
                pipe.watch(*stored_keys)
                raw = pipe.mget(stored_keys)
                stored = {
                    key: serializer.loads(value)
                    for key, value in zip(keys, raw, strict=True)
                    if value is not None
                }
                writes = decide(stored)
                pipe.multi()
                for window, values in writes.items():
                    for key, value in values.items():
                        pipe.set(
                            cache.make_and_validate_key(key), serializer.dumps(value), ex=window
                        )
                pipe.execute()
                return True
            except WatchError:
                continue
    return False


@contextmanager
def _file_lock(cache: FileBasedCache) -> Iterator[None]:
    folder: str = cache._dir  # type: ignore[attr-defined]  # FileBasedCache.__init__
    os.makedirs(folder, mode=0o700, exist_ok=True)
    with open(os.path.join(folder, LOCK_FILE), "ab") as handle:
        locks.lock(handle, locks.LOCK_EX)
        try:
            yield
        finally:
            locks.unlock(handle)
