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
countdown, so other subscriptions' requests get the slot (issue 18, goal 2). The deferred run's
tokens are reserved (the bucket goes into debt) and travel with the requeued task, which spends
them when it comes back: deferred runs line up behind each other in the order they were turned
away, come back when their tokens are due, and no token is counted twice or left unspent. A run
deferred at its first phase reserves its later phases' tokens too (`acquire_writes(later=)`),
so it comes back once with all of them rather than lining up again for each phase; and it is
sent at the top message priority (settings.PROVISIONING_DEFERRED_PRIORITY), so that a worker
receives it at once rather than once the queue in front of it has drained.

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

# (outcome, seconds). GRANTED: the tokens are taken, use them after sleeping `seconds` (at most
# the caller's max_wait). RESERVED: taken too, but due only in `seconds` (at most max_defer):
# come back then with them. REFUSED: nothing taken (the debt is already max_defer deep).
REFUSED, GRANTED, RESERVED = 0, 1, 2
Take = tuple[int, float]


@dataclass
class _State:
    tokens: float
    at: float
    held_until: float = 0.0


def _take(
    state: _State,
    now: float,
    *,
    capacity: float,
    refill: float,
    cost: float,
    max_wait: float,
    max_defer: float,
) -> Take:
    """The bucket arithmetic, the same as BUCKET_SCRIPT's (keep the two in step)."""
    cost = min(cost, capacity)
    state.tokens = min(capacity, state.tokens + max(0.0, now - state.at) * refill)
    state.at = now
    wait = max(0.0, state.held_until - now)
    if state.tokens < cost:
        wait = max(wait, (cost - state.tokens) / refill)
    if wait > max(max_wait, max_defer):
        return REFUSED, wait
    state.tokens -= cost
    return (GRANTED if wait <= max_wait else RESERVED), wait


class Buckets(Protocol):
    def take(
        self,
        key: str,
        *,
        capacity: float,
        refill: float,
        cost: float,
        max_wait: float,
        max_defer: float = 0.0,
    ) -> Take: ...

    def hold(self, key: str, seconds: float, *, capacity: float) -> None: ...

    def observe(self, key: str, remaining: float, *, capacity: float, refill: float) -> None: ...

    def clear(self) -> None: ...


class LocalBuckets:
    """Token buckets in this process (drift's read pacer; writes without Redis)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def _state(self, key: str, capacity: float, now: float) -> _State:
        return self._states.setdefault(key, _State(tokens=capacity, at=now))

    def take(
        self,
        key: str,
        *,
        capacity: float,
        refill: float,
        cost: float,
        max_wait: float,
        max_defer: float = 0.0,
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
                max_defer=max_defer,
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


# One bucket per Redis hash: tokens, at, held_until. Redis's own clock (TIME) is the one clock
# of every process; scripts may call TIME since Redis 5 (effects replication).
# ARGV: op ("take" | "hold" | "observe"), capacity, refill, cost | seconds | remaining,
# max_wait, max_defer.
# Numbers come back as strings: Lua numbers would be truncated to integers.
BUCKET_SCRIPT = """
local op = ARGV[1]
local capacity = tonumber(ARGV[2])
local refill = tonumber(ARGV[3])
local value = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local max_defer = tonumber(ARGV[6])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'held_until')
local tokens = tonumber(s[1]) or capacity
local at = tonumber(s[2]) or now
local held_until = tonumber(s[3]) or 0
tokens = math.min(capacity, tokens + math.max(0, now - at) * refill)
local outcome = 1
local wait = 0
if op == 'take' then
  local cost = math.min(value, capacity)
  wait = math.max(0, held_until - now)
  if tokens < cost then wait = math.max(wait, (cost - tokens) / refill) end
  if wait > math.max(max_wait, max_defer) then
    outcome = 0
  else
    tokens = tokens - cost
    if wait > max_wait then outcome = 2 end
  end
elseif op == 'hold' then
  held_until = math.max(held_until, now + value)
elseif op == 'observe' then
  tokens = math.min(tokens, value)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now),
  'held_until', tostring(held_until))
-- Gone once it would be full again and nobody waits on it.
local idle = math.max(held_until, now) - now + (capacity - tokens) / refill
redis.call('PEXPIRE', KEYS[1], math.ceil(idle * 1000) + 60000)
return {outcome, tostring(wait)}
"""


class RedisBuckets:
    """Token buckets in Redis shared by every worker process (BUCKET_SCRIPT, atomic)."""

    def __init__(self, client: redis.Redis, prefix: str = "wip:arm-bucket:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(BUCKET_SCRIPT)

    def _run(self, key: str, *args: str | float) -> Take:
        outcome, wait = self._script(keys=[self._prefix + key], args=list(args))
        return int(outcome), float(wait)

    def take(
        self,
        key: str,
        *,
        capacity: float,
        refill: float,
        cost: float,
        max_wait: float,
        max_defer: float = 0.0,
    ) -> Take:
        # Lua's tonumber() does not read "inf": a day stands for "forever" here.
        day = 86400.0
        return self._run(
            key, "take", capacity, refill, cost, min(max_wait, day), min(max_defer, day)
        )

    def hold(self, key: str, seconds: float, *, capacity: float) -> None:
        self._run(key, "hold", capacity, 1, seconds, 0, 0)

    def observe(self, key: str, remaining: float, *, capacity: float, refill: float) -> None:
        self._run(key, "observe", capacity, refill, remaining, 0, 0)

    def clear(self) -> None:
        """Forget every bucket (each starts full again), holds from Retry-After included."""
        keys = list(self._client.scan_iter(match=self._prefix + "*", count=500))
        if keys:
            self._client.delete(*keys)


# --- the write limiter ------------------------------------------------------------------------

KINDS = ("writes", "deletes")


# Tokens a deferred run already holds, carried in its requeued task's message (JSON):
# [[subscription, kind, tokens, due (epoch seconds)], ...].
Prepaid = list[list[Any]]
# A run that comes back later than this after its tokens were due finds them gone: ARM's bucket
# refilled them unused meanwhile (up to its size), and so did the copy, so it asks afresh.
# Otherwise runs held up together (a busy queue) would all write at once on old tokens.
PREPAID_GRACE_SECONDS = 2.0


class WritesDeferred(Exception):
    """A subscription's write bucket is empty for longer than a worker should wait: run this
    again in `countdown` seconds with `prepaid` (nothing of the phase was sent). `reserved`:
    the phase's tokens are reserved and due then; otherwise the line was too long to join, and
    the run asks again when it comes back."""

    def __init__(
        self,
        subscription: str,
        kind: str,
        countdown: float,
        prepaid: Counter[tuple[str, str]],
        due: float,
        *,
        reserved: bool = True,
    ) -> None:
        super().__init__(
            f"ARM {kind} of subscription {subscription} are spent for {countdown:.1f}s"
        )
        self.subscription = subscription
        self.kind = kind
        self.countdown = countdown
        self.prepaid = prepaid
        self.due = due
        self.reserved = reserved

    def prepaid_json(self) -> Prepaid:
        return [
            [sub, kind, tokens, round(self.due, 3)]
            for (sub, kind), tokens in self.prepaid.items()
            if tokens > 0
        ]


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


def forget_buckets() -> None:
    """Drop what the limiter learnt (tokens, Retry-After holds), here and in Redis: after
    changing the bucket sizes, or when the Azure it mirrored is another one (each test's own
    emulator: a 429 storm's holds must not slow the next test)."""
    _local.clear()
    buckets = write_buckets()
    if buckets is not None:
        buckets.clear()


def write_buckets() -> Buckets | None:
    """The buckets the write limiter uses: Redis, this process's (no Redis), or none (off)."""
    mode = settings.PROVISIONING_WRITE_LIMITER
    if mode == "off":
        return None
    if mode == "redis" and settings.REDIS_URL:
        return _redis_buckets(settings.REDIS_URL)
    return _local


@dataclass
class _Wallet:
    """Inside a provisioning run: the tokens it was given when it was deferred, and when."""

    tokens: Counter[tuple[str, str]]
    due: float = 0.0


_wallet: contextvars.ContextVar[_Wallet | None] = contextvars.ContextVar(
    "write_wallet", default=None
)


@contextlib.contextmanager
def deferrable(prepaid: Prepaid | None = None) -> Iterator[None]:
    """Inside, a long wait for ARM write tokens raises WritesDeferred (the caller requeues
    itself), and the tokens `prepaid` by an earlier deferral are spent first; outside (repair,
    revoke, tags) the caller waits for its tokens."""
    wallet = _Wallet(Counter())
    now = time.time()
    for subscription, kind, tokens, due in prepaid or []:
        if now <= float(due) + PREPAID_GRACE_SECONDS:
            wallet.tokens[(str(subscription).lower(), str(kind))] += int(tokens)
            wallet.due = max(wallet.due, float(due))
    token = _wallet.set(wallet)
    try:
        yield
    finally:
        _wallet.reset(token)


def _key(subscription: str, kind: str) -> str:
    return f"{kind}:{subscription}"


def acquire_writes(
    costs: Counter[tuple[str, str]],
    later: Callable[[], Counter[tuple[str, str]]] | None = None,
) -> None:
    """Take the tokens a phase of writes needs, per (subscription, kind), before sending it.

    Tokens due within PROVISIONING_WRITE_MAX_INLINE_WAIT_SECONDS: sleep, then write. Later (in a
    deferrable run): they are reserved and WritesDeferred carries them, with the countdown to
    when they are due, to the requeued run, which spends them first. `later` names the writes
    of the run's next phases: a deferred run reserves them too, so that it comes back once with
    all of its tokens rather than going to the back of the line again for each phase. The Redis
    limiter unreachable: go on unmetered (ARM's 429s still pace the writes)."""
    buckets = write_buckets()
    if buckets is None:
        return
    wallet = _wallet.get()
    if wallet is None:
        max_wait, max_defer = math.inf, 0.0
    else:
        # A countdown stays well inside the sweeper's window: deferred is not stuck.
        max_wait = settings.PROVISIONING_WRITE_MAX_INLINE_WAIT_SECONDS
        max_defer = settings.SWEEPER_STALE_SECONDS / 2
    taken: Counter[tuple[str, str]] = Counter()
    sleep, due, refused = 0.0, 0.0, 0.0
    last = ("", "writes")
    # One bucket after another: a phase's writes nearly always go to one subscription.
    for (subscription, kind), cost in sorted(costs.items()):
        key = (subscription.lower(), kind)
        last = key
        if wallet is not None and wallet.tokens[key] > 0:
            spent = min(cost, wallet.tokens[key])
            wallet.tokens[key] -= spent
            taken[key] += spent
            cost -= spent
            # Sent back a little early: the tokens are ARM's only once due.
            sleep = max(sleep, wallet.due - time.time())
        if cost <= 0:
            continue
        try:
            outcome, wait = _ask(buckets, key, cost, max_wait=max_wait, max_defer=max_defer)
        except redis.exceptions.RedisError as error:
            logger.warning("write limiter unavailable (%s): writing unmetered", error)
            return
        if outcome == REFUSED:
            # The line is max_defer deep: come back when this run's turn could be reserved.
            refused = max(1.0, wait - max_defer)
            break
        taken[key] += cost
        if outcome == RESERVED:
            due = max(due, wait)
        else:
            sleep = max(sleep, wait)
    if due and not refused and later is not None:
        # What the run holds already (prepaid, not spent by this phase) is not asked again.
        needed = later() - (wallet.tokens if wallet is not None else Counter())
        due = max(due, _reserve_later(buckets, needed, taken, max_defer=max_defer))
    if refused or due:
        prepaid = taken + (wallet.tokens if wallet is not None else Counter())
        # Back a little before the tokens are due (a rerun waits up to max_wait for them), so a
        # worker's start-up of the rerun does not leave ARM's bucket idle.
        if refused:
            # Nothing reserved: the line is longer than max_defer. Runs turned away together
            # would come back together and mostly be turned away again, each time costing a
            # worker a task (tens of thousands of them in the 1,500-request benchmark). So each
            # stays away at least half of max_defer, spread over a quarter more: the line is
            # still a quarter of max_defer deep when the last comes back, so the bucket never
            # idles for them.
            spread = random.uniform(0, max_defer / 4)  # noqa: S311
            countdown = max(refused, max_defer / 2) + spread
        else:
            countdown = max(0.0, due - min(max_wait, 0.5))
        raise WritesDeferred(
            last[0],
            last[1],
            countdown,
            prepaid,
            time.time() + (due or countdown),
            reserved=not refused,
        )
    if sleep > 0:
        time.sleep(sleep)


def _ask(
    buckets: Buckets, key: tuple[str, str], cost: float, *, max_wait: float, max_defer: float
) -> Take:
    """Take `cost` tokens from the bucket of `key` (subscription, kind), at ARM's sizes."""
    bucket = bucket_for(key[1])
    return buckets.take(
        _key(*key),
        capacity=bucket.capacity,
        refill=bucket.refill,
        cost=cost,
        max_wait=max_wait,
        max_defer=max_defer,
    )


def _reserve_later(
    buckets: Buckets,
    costs: Counter[tuple[str, str]],
    taken: Counter[tuple[str, str]],
    *,
    max_defer: float,
) -> float:
    """Reserve a deferred run's later phases (added to `taken`); the longest wait among them.
    A bucket whose line is too deep is skipped: that phase asks again when it comes."""
    due = 0.0
    for (subscription, kind), cost in sorted(costs.items()):
        if cost <= 0:
            continue
        key = (subscription.lower(), kind)
        try:
            outcome, wait = _ask(buckets, key, cost, max_wait=0.0, max_defer=max_defer)
        except redis.exceptions.RedisError:
            return due
        if outcome != REFUSED:
            taken[key] += cost
            due = max(due, wait)
    return due


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
