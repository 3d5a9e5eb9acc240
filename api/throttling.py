"""Rate limits per API token, per user and per anonymous client address.

Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] ("token", "user", "anon"), read when a
request is checked so overriding the setting takes effect. A token request counts against its
token and its user, so minting more tokens does not raise a user's limit. Counters live in the
default cache: a folder every process of the machine shares, or Redis with CACHE_URL.

A check reads the counters, decides and writes them back as one atomic step, so concurrent
requests cannot each read the same log and write back one entry between them (a read then a
write, as DRF's own throttles do, let c parallel callers make up to c times the limit):
- on Redis, one Lua script (EVALSHA), which Redis runs with no other command in between
  (redis.io, "Scripting with Lua": "Redis guarantees the script's atomic execution"). Each log
  is a sorted set of request times there: the script trims it to the window, counts it and adds
  the request with ZREMRANGEBYSCORE, ZCARD and ZADD, each O(log n), so a check costs one round
  trip whatever the log's length, and the log never crosses the network;
- on the file cache, an exclusive lock on a file in its folder (`django.core.files.locks`, the
  lock the file cache takes for its own writes) around a read and a write of DRF's lists;
- on any other cache, a lock of this process around the same.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import AbstractContextManager
from typing import Any

from django.core.cache import cache as default_cache
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache
from django.utils.connection import ConnectionProxy
from redis.commands.core import Script
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from api.permissions import request_token
from identities.filelock import folder_lock

# DRF's spelling of a counter's key and of a rate's period (SimpleRateThrottle.parse_rate).
CACHE_FORMAT = "throttle_%(scope)s_%(ident)s"
# On Redis the log is a sorted set under the key plus this: never the key a list was kept
# under, which a process of the previous release may still read or write (a sorted-set command
# on a string key fails with WRONGTYPE).
REDIS_LOG_SUFFIX = ":log"
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'600/min' -> (600, 60): requests allowed, and the window in seconds."""
    number, period = rate.split("/")
    return int(number), PERIODS[period[0]]


class ApiRateThrottle(BaseThrottle):
    """The token, user and anonymous limits, each DRF's sliding log of request times (the same
    keys, windows and Retry-After as `SimpleRateThrottle`), checked together in one atomic
    step (`check_limits`): on Redis one script, elsewhere one read of every counter that
    applies and one write. One DRF throttle class per limit read and wrote its own counter:
    four round trips per token request, about 1 ms of every API call, and none of them atomic.

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
        self.waits = check_limits(self.cache, limits, time.time()) if limits else []
        return not self.waits

    def wait(self) -> float | None:
        return max(self.waits) if self.waits else None


def _wait(logged: int, oldest: float | None, number: int, window: int, now: float) -> float:
    """SimpleRateThrottle.wait for a log of `logged` times, the oldest `oldest`: the rest of the
    window over the requests it will free (where DRF gives no wait, a log longer than a
    lowered limit, the rest of the window)."""
    remaining = window - (now - oldest) if oldest is not None else window
    available = number - logged + 1
    return remaining / available if available > 0 else remaining


# (cache key, requests allowed, window in seconds)
Limit = tuple[str, int, int]
LOCK_FILE = "throttle.lock"
_process_lock = threading.Lock()


def check_limits(cache: BaseCache, limits: list[Limit], now: float) -> list[float]:
    """Count a request made at `now` against each limit that has room for it, with no other
    check of those counters in between; the waits of the limits that refused it (none: it
    passes)."""
    cache = _backend(cache)
    if isinstance(cache, RedisCache):
        return _check_redis(cache, limits, now)
    lock: AbstractContextManager[Any] = (
        folder_lock(cache._dir, LOCK_FILE)  # type: ignore[attr-defined]  # FileBasedCache
        if isinstance(cache, FileBasedCache)
        else _process_lock
    )
    with lock:
        stored = cache.get_many([key for key, _n, _w in limits])
        waits = []
        counted: dict[int, dict[str, list[float]]] = {}  # {window (the timeout): {key: log}}
        for key, number, window in limits:
            # Newest first; drop the times that have left the window.
            history = [at for at in stored.get(key, []) if at > now - window]
            if len(history) >= number:
                oldest = history[-1] if history else None
                waits.append(_wait(len(history), oldest, number, window, now))
            else:
                counted.setdefault(window, {})[key] = [now, *history]
        for window, values in counted.items():
            cache.set_many(values, window)
    return waits


# KEYS: the logs; ARGV: now, the request's member, then (allowed, window, now - window) per log.
# Times stay the strings Python wrote (repr, exact), never Lua numbers, whose conversion back to
# text may round them. Per log the answer is {0} (counted) or {1, logged, oldest time}
# (refused). A window is trimmed as DRF does: times at or before now - window are gone.
_CHECK_SCRIPT = """
local answer = {}
for i, key in ipairs(KEYS) do
  local allowed = tonumber(ARGV[3 * i])
  local window = ARGV[3 * i + 1]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[3 * i + 2])
  local logged = redis.call('ZCARD', key)
  if logged >= allowed then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    answer[i] = {1, logged, oldest[2] or ''}
  else
    redis.call('ZADD', key, ARGV[1], ARGV[2])
    redis.call('EXPIRE', key, window)
    answer[i] = {0}
  end
end
return answer
"""
_script: Script | None = None


def _check_redis(cache: RedisCache, limits: list[Limit], now: float) -> list[float]:
    # Django's Redis backend keeps its client private (django/core/cache/backends/redis.py:
    # RedisCacheClient.get_client); the keys carry the cache's prefix and version, as its own.
    global _script
    client = cache._cache.get_client(write=True)
    if _script is None:
        # redis-py's Script sends EVALSHA, and the script itself where a server lacks it.
        _script = client.register_script(_CHECK_SCRIPT)
    args: list[Any] = [repr(now), uuid.uuid4().hex]  # a member of its own: ZADD keeps one each
    for _key, number, window in limits:
        args += [number, window, repr(now - window)]
    keys = [cache.make_and_validate_key(key + REDIS_LOG_SUFFIX) for key, _n, _w in limits]
    answers = _script(keys=keys, args=args, client=client)
    waits = []
    for (_key, number, window), answer in zip(limits, answers, strict=True):
        if int(answer[0]):
            oldest = float(answer[2]) if answer[2] else None
            waits.append(_wait(int(answer[1]), oldest, number, window, now))
    return waits


def _backend(cache: BaseCache) -> BaseCache:
    if isinstance(cache, ConnectionProxy):  # django.core.cache.cache: the backend behind it
        return cache._connections[cache._alias]
    return cache


def logged_requests(cache: BaseCache, key: str) -> int:
    """How many request times the counter under `key` holds (its trimming waits for the next
    check)."""
    cache = _backend(cache)
    if isinstance(cache, RedisCache):
        client = cache._cache.get_client()
        return int(client.zcard(cache.make_and_validate_key(key + REDIS_LOG_SUFFIX)))
    return len(cache.get(key, []))
