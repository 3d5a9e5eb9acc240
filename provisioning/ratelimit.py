"""Client-side token buckets for ARM's per-subscription limits, and the write limiter.

ARM meters requests per subscription and principal in token buckets: writes 200 refilled at
10/s, deletes 200 at 10/s (their own bucket), reads 250 at 25/s (Learn "Understand how Azure
Resource Manager throttles requests", azure-docs request-limits-and-throttling.md, "Regional
throttling and token bucket algorithm"). Every worker process of the portal writes with the
same principal, so they share ARM's buckets: the write limiter keeps one copy of each bucket in
Redis, updated by one Lua script (atomic across processes and machines), and the engine asks it
before each phase of writes. ARM stays the authority: a 429 still is waited out as before
(provisioning.retry), and its Retry-After and the x-ms-ratelimit-remaining-subscription-writes /
-deletes of every answer are fed back into the copy.

A bucket that is empty for longer than PROVISIONING_WRITE_MAX_INLINE_WAIT_SECONDS does not hold
the worker: a provisioning run raises WritesDeferred and its task is sent again with that
countdown, so other subscriptions' requests get the slot (issue 18, goal 2). Deferred callers
line up behind each other (a per-bucket horizon), so they come back about as fast as the bucket
refills instead of all at once.

Without Redis (the embedded default: one worker on a filesystem broker) the buckets are
process-local (LocalBuckets), which is exact for that single worker process.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# (granted, seconds): granted → a token was taken, sleep `seconds` first (a reservation, at most
# the caller's max_wait); not granted → nothing taken, come back in `seconds`.
Take = tuple[bool, float]


@dataclass
class _State:
    tokens: float
    at: float
    held_until: float = 0.0
    horizon: float = 0.0


def _take(
    state: _State, now: float, *, capacity: float, refill: float, cost: float, max_wait: float
) -> Take:
    """The bucket arithmetic, the same as BUCKET_SCRIPT's (keep the two in step)."""
    cost = min(cost, capacity)
    state.tokens = min(capacity, state.tokens + max(0.0, now - state.at) * refill)
    state.at = now
    wait = max(0.0, state.held_until - now)
    if state.tokens < cost:
        wait = max(wait, (cost - state.tokens) / refill)
    if wait <= max_wait:
        state.tokens -= cost
        return True, wait
    state.horizon = max(state.horizon, now + wait) + cost / refill
    return False, state.horizon - now


class Buckets(Protocol):
    def take(
        self, key: str, *, capacity: float, refill: float, cost: float, max_wait: float
    ) -> Take: ...

    def hold(self, key: str, seconds: float, *, capacity: float) -> None: ...

    def observe(self, key: str, remaining: float, *, capacity: float, refill: float) -> None: ...


class LocalBuckets:
    """Token buckets in this process (drift's read pacer; writes without Redis)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def _state(self, key: str, capacity: float, now: float) -> _State:
        return self._states.setdefault(key, _State(tokens=capacity, at=now))

    def take(
        self, key: str, *, capacity: float, refill: float, cost: float, max_wait: float
    ) -> Take:
        with self._lock:
            now = self._clock()
            return _take(
                self._state(key, capacity, now),
                now,
                capacity=capacity,
                refill=refill,
                cost=cost,
                max_wait=max_wait,
            )

    def hold(self, key: str, seconds: float, *, capacity: float) -> None:
        """Nothing taken from `key` for `seconds` (a Retry-After)."""
        with self._lock:
            now = self._clock()
            state = self._state(key, capacity, now)
            state.held_until = max(state.held_until, now + seconds)

    def observe(self, key: str, remaining: float, *, capacity: float, refill: float) -> None:
        """ARM said `remaining` tokens are left: never count on more than that."""
        with self._lock:
            now = self._clock()
            state = self._state(key, capacity, now)
            state.tokens = min(capacity, state.tokens + max(0.0, now - state.at) * refill)
            state.at = now
            state.tokens = min(state.tokens, remaining)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


# One bucket per Redis hash: tokens, at, held_until, horizon. Redis's own clock (TIME) is the
# one clock of every process; scripts may call TIME since Redis 5 (effects replication).
# ARGV: op ("take" | "hold" | "observe"), capacity, refill, cost | seconds | remaining, max_wait.
# Numbers come back as strings: Lua numbers would be truncated to integers.
BUCKET_SCRIPT = """
local op = ARGV[1]
local capacity = tonumber(ARGV[2])
local refill = tonumber(ARGV[3])
local value = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'held_until', 'horizon')
local tokens = tonumber(s[1]) or capacity
local at = tonumber(s[2]) or now
local held_until = tonumber(s[3]) or 0
local horizon = tonumber(s[4]) or 0
tokens = math.min(capacity, tokens + math.max(0, now - at) * refill)
local granted = 1
local wait = 0
if op == 'take' then
  local cost = math.min(value, capacity)
  wait = math.max(0, held_until - now)
  if tokens < cost then wait = math.max(wait, (cost - tokens) / refill) end
  if wait <= max_wait then
    tokens = tokens - cost
  else
    granted = 0
    horizon = math.max(horizon, now + wait) + cost / refill
    wait = horizon - now
  end
elseif op == 'hold' then
  held_until = math.max(held_until, now + value)
elseif op == 'observe' then
  tokens = math.min(tokens, value)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now),
  'held_until', tostring(held_until), 'horizon', tostring(horizon))
-- Gone once it would be full again and nobody waits on it.
local idle = math.max(held_until, horizon, now) - now + (capacity - math.min(tokens, 0)) / refill
redis.call('PEXPIRE', KEYS[1], math.ceil(idle * 1000) + 60000)
return {granted, tostring(wait)}
"""


class RedisBuckets:
    """Token buckets in Redis shared by every worker process (BUCKET_SCRIPT, atomic)."""

    def __init__(self, client: redis.Redis, prefix: str = "wip:arm-bucket:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(BUCKET_SCRIPT)

    def _run(self, key: str, *args: str | float) -> Take:
        granted, wait = self._script(keys=[self._prefix + key], args=list(args))
        return bool(granted), float(wait)

    def take(
        self, key: str, *, capacity: float, refill: float, cost: float, max_wait: float
    ) -> Take:
        # Redis rejects "inf" in tonumber() comparisons poorly: a day is "forever" here.
        return self._run(key, "take", capacity, refill, cost, min(max_wait, 86400.0))

    def hold(self, key: str, seconds: float, *, capacity: float) -> None:
        self._run(key, "hold", capacity, 1, seconds, 0)

    def observe(self, key: str, remaining: float, *, capacity: float, refill: float) -> None:
        self._run(key, "observe", capacity, refill, remaining, 0)


# --- the write limiter ------------------------------------------------------------------------

KINDS = ("writes", "deletes")


class WritesDeferred(Exception):
    """A subscription's write bucket is empty for longer than a worker should wait: run this
    again in `countdown` seconds (nothing of the phase was sent)."""

    def __init__(self, subscription: str, kind: str, countdown: float) -> None:
        super().__init__(
            f"ARM {kind} of subscription {subscription} are spent for {countdown:.1f}s"
        )
        self.subscription = subscription
        self.kind = kind
        self.countdown = countdown


@dataclass(frozen=True)
class Bucket:
    capacity: float
    refill: float


def bucket_for(kind: str) -> Bucket:
    """ARM's documented size and refill for `kind` (settings; both 200 at 10/s by default)."""
    if kind == "deletes":
        return Bucket(
            settings.PROVISIONING_DELETE_BUCKET_CAPACITY,
            settings.PROVISIONING_DELETE_REFILL_PER_SECOND,
        )
    return Bucket(
        settings.PROVISIONING_WRITE_BUCKET_CAPACITY, settings.PROVISIONING_WRITE_REFILL_PER_SECOND
    )


_local = LocalBuckets()


@lru_cache(maxsize=2)
def _redis_buckets(url: str) -> RedisBuckets:
    return RedisBuckets(redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10))


def write_buckets() -> Buckets | None:
    """The buckets the write limiter uses: Redis, this process's (no Redis), or none (off)."""
    mode = settings.PROVISIONING_WRITE_LIMITER
    if mode == "off":
        return None
    if mode == "redis" and settings.REDIS_URL:
        return _redis_buckets(settings.REDIS_URL)
    return _local


_deferrable: contextvars.ContextVar[bool] = contextvars.ContextVar("deferrable", default=False)


@contextlib.contextmanager
def deferrable() -> Iterator[None]:
    """Inside, a long wait for ARM write tokens raises WritesDeferred (the caller requeues
    itself); outside (repair, revoke, tags) the caller waits for its tokens."""
    token = _deferrable.set(True)
    try:
        yield
    finally:
        _deferrable.reset(token)


def _key(subscription: str, kind: str) -> str:
    return f"{kind}:{subscription.lower()}"


def acquire_writes(costs: Counter[tuple[str, str]]) -> None:
    """Take the tokens a phase of writes needs, per (subscription, kind), before sending it:
    sleep briefly if they come soon, else (when deferrable) raise WritesDeferred. The Redis
    limiter unreachable: go on unmetered (ARM's 429s still pace the writes)."""
    buckets = write_buckets()
    if buckets is None:
        return
    inline = settings.PROVISIONING_WRITE_MAX_INLINE_WAIT_SECONDS
    max_wait = inline if _deferrable.get() else math.inf
    longest = 0.0
    # One bucket after another: a phase's writes nearly always go to one subscription.
    for (subscription, kind), cost in sorted(costs.items()):
        bucket = bucket_for(kind)
        try:
            granted, wait = buckets.take(
                _key(subscription, kind),
                capacity=bucket.capacity,
                refill=bucket.refill,
                cost=cost,
                max_wait=max_wait,
            )
        except redis.exceptions.RedisError as error:
            logger.warning("write limiter unavailable (%s): writing unmetered", error)
            return
        if not granted:
            # A little jitter so requeued runs of one instant do not all land on one tick.
            raise WritesDeferred(subscription, kind, wait + random.uniform(0, 0.25))  # noqa: S311
        longest = max(longest, wait)
    if longest > 0:
        time.sleep(longest)


def url_subscription(url: str) -> str:
    parts = urlsplit(url).path.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1].lower()
    return ""


THROTTLED = 429


def observe_response(pipeline_response: Any) -> None:
    """azure-core response hook: feed ARM's answers to writes back into the limiter, its
    x-ms-ratelimit-remaining-subscription-writes/-deletes and a 429's Retry-After."""
    request = pipeline_response.http_request
    if request.method not in {"PUT", "PATCH", "DELETE"}:
        return
    buckets = write_buckets()
    subscription = url_subscription(request.url)
    if buckets is None or not subscription:
        return
    kind = "deletes" if request.method == "DELETE" else "writes"
    bucket = bucket_for(kind)
    headers = pipeline_response.http_response.headers
    key = _key(subscription, kind)
    with contextlib.suppress(redis.exceptions.RedisError, ValueError):
        remaining = headers.get(f"x-ms-ratelimit-remaining-subscription-{kind}")
        if remaining is not None:
            buckets.observe(key, float(remaining), capacity=bucket.capacity, refill=bucket.refill)
        if pipeline_response.http_response.status_code == THROTTLED:
            retry_after = float(headers.get("Retry-After") or 1)
            buckets.hold(key, retry_after, capacity=bucket.capacity)
