"""The write limiter's token buckets (provisioning.ratelimit): Redis, shared by processes, and the
process-local fallback, which must do the same arithmetic."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.test import override_settings

from provisioning import ratelimit
from provisioning.ratelimit import (
    GRANTED,
    REFUSED,
    RESERVED,
    LocalBuckets,
    RedisBuckets,
    WritesDeferred,
)
from tests.support.services import redis_url_or_missing


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_url() -> str:
    return redis_url_or_missing()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    prefix = f"test-limiter-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


@contextlib.contextmanager
def redis_limiter(
    redis_url: str, prefix: str, *, capacity: float, refill: float, **settings: Any
) -> Iterator[None]:
    """The write limiter on Redis with these sizes (inline wait 0.05 s), its keys under
    `prefix`."""
    with override_settings(
        REDIS_URL=redis_url,
        PROVISIONING_WRITE_LIMITER="redis",
        PROVISIONING_WRITE_BUCKET_CAPACITY=capacity,
        PROVISIONING_WRITE_REFILL_PER_SECOND=refill,
        PROVISIONING_WRITE_MAX_INLINE_WAIT_SECONDS=0.05,
        **settings,
    ):
        ratelimit._redis_buckets.cache_clear()
        buckets = ratelimit.write_buckets()
        assert isinstance(buckets, RedisBuckets)
        buckets._prefix = prefix
        try:
            yield
        finally:
            ratelimit._redis_buckets.cache_clear()


def _take_many(
    url: str, prefix: str, attempts: int, start: Any, results: multiprocessing.Queue
) -> None:
    buckets = RedisBuckets(redis.Redis.from_url(url), prefix=prefix)
    buckets.hold("warm-up", 0, capacity=1)  # connected and the script loaded before the start
    start.wait(timeout=60)
    granted = 0
    for _ in range(attempts):
        outcome, _wait = buckets.take("writes:sub", capacity=1000, refill=0.001, cost=1, max_wait=0)
        granted += outcome == GRANTED
    results.put(granted)


def test_processes_racing_for_one_bucket_never_take_more_than_it_holds(
    redis_url: str, prefix: str
) -> None:
    # Four processes, 400 attempts each, on a bucket of 1000 that refills about never: exactly
    # 1000 are granted, whatever the interleaving (a read-modify-write outside one script
    # would hand the same token to several processes).
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    start = context.Barrier(4)
    processes = [
        context.Process(target=_take_many, args=(redis_url, prefix, 400, start, results))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    granted = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert sum(granted) == 1000
    assert all(count > 0 for count in granted), granted  # they really raced


@pytest.fixture(params=["redis", "local"])
def buckets(request: pytest.FixtureRequest) -> ratelimit.Buckets:
    if request.param == "local":
        return LocalBuckets(FakeClock())
    url = redis_url_or_missing()
    prefix = request.getfixturevalue("prefix")
    return RedisBuckets(redis.Redis.from_url(url), prefix=prefix)


def test_a_full_bucket_grants_at_once_then_reserves_a_short_wait(
    buckets: ratelimit.Buckets,
) -> None:
    size = {"capacity": 3.0, "refill": 2.0}
    assert buckets.take("writes:a", **size, cost=3, max_wait=1) == (GRANTED, 0.0)
    outcome, wait = buckets.take("writes:a", **size, cost=1, max_wait=1)
    # One token is half a second away at 2/s: taken, the caller sleeps that long.
    assert outcome == GRANTED
    assert wait == pytest.approx(0.5, abs=0.05)


def test_an_empty_bucket_reserves_for_deferred_callers_one_behind_the_other(
    buckets: ratelimit.Buckets,
) -> None:
    size = {"capacity": 2.0, "refill": 1.0}
    buckets.take("writes:a", **size, cost=2, max_wait=0)
    first = buckets.take("writes:a", **size, cost=2, max_wait=0.5, max_defer=5)
    second = buckets.take("writes:a", **size, cost=2, max_wait=0.5, max_defer=5)
    third = buckets.take("writes:a", **size, cost=2, max_wait=0.5, max_defer=5)
    # The first's two tokens are due in 2 s, the second's in 4 s; the third's (6 s) are further
    # than anyone may be deferred: nothing is taken for it.
    assert first[0] == RESERVED
    assert first[1] == pytest.approx(2, abs=0.1)
    assert second[0] == RESERVED
    assert second[1] == pytest.approx(4, abs=0.1)
    assert third[0] == REFUSED
    assert third[1] == pytest.approx(6, abs=0.1)
    # Another subscription's bucket is untouched.
    assert buckets.take("writes:b", **size, cost=2, max_wait=0) == (GRANTED, 0.0)


def test_a_retry_after_holds_the_bucket_and_a_low_remaining_count_empties_it(
    buckets: ratelimit.Buckets,
) -> None:
    size = {"capacity": 10.0, "refill": 10.0}
    buckets.hold("writes:a", 5, capacity=10)
    outcome, wait = buckets.take("writes:a", **size, cost=1, max_wait=1)
    assert outcome == REFUSED
    assert wait >= 4.9
    buckets.observe("writes:b", 0, **size)
    outcome, wait = buckets.take("writes:b", **size, cost=5, max_wait=1)
    assert outcome == GRANTED
    assert wait == pytest.approx(0.5, abs=0.05)


@pytest.mark.django_db
def test_a_phase_inside_a_provisioning_run_is_deferred_outside_it_waits(
    redis_url: str, prefix: str
) -> None:
    costs = Counter({("sub-a", "writes"): 2})
    with redis_limiter(redis_url, prefix, capacity=2, refill=20):
        ratelimit.acquire_writes(costs)  # the full bucket
        with ratelimit.deferrable(), pytest.raises(WritesDeferred) as deferred:
            ratelimit.acquire_writes(costs)
        assert deferred.value.subscription == "sub-a"
        assert deferred.value.due > time.time() + 0.05
        # Its tokens are reserved and go with it: the rerun spends them without asking.
        assert [entry[:3] for entry in deferred.value.prepaid_json()] == [["sub-a", "writes", 2]]
        with ratelimit.deferrable(deferred.value.prepaid_json()):
            ratelimit.acquire_writes(costs)
        ratelimit.acquire_writes(costs)  # not deferrable: waits for its tokens


@pytest.mark.django_db
def test_a_deferred_run_reserves_its_later_phases_and_comes_back_once_with_all_its_tokens(
    redis_url: str, prefix: str
) -> None:
    identity = Counter({("sub-a", "writes"): 1})
    children = Counter({("sub-a", "writes"): 3})
    asked: list[str] = []

    def later() -> Counter[tuple[str, str]]:
        asked.append("later")
        return children

    with redis_limiter(redis_url, prefix, capacity=3, refill=10):
        ratelimit.acquire_writes(children)  # empties the bucket
        ratelimit.acquire_writes(identity, later=later)  # not deferrable: waits its 0.1 s
        # Not deferred: the later phases are not even counted (no query on the fast path).
        assert asked == []
        with ratelimit.deferrable(), pytest.raises(WritesDeferred) as deferred:
            ratelimit.acquire_writes(identity, later=later)
        assert asked == ["later"]
        # One token for this phase and three for the children, all due 4 / 10 s from now.
        assert [entry[:3] for entry in deferred.value.prepaid_json()] == [["sub-a", "writes", 4]]
        assert deferred.value.due == pytest.approx(time.time() + 0.4, abs=0.05)
        # The rerun spends them phase by phase without asking the bucket, which is empty until
        # they are due: asking it would defer the children again (3 tokens are 0.3 s away).
        with ratelimit.deferrable(deferred.value.prepaid_json()):
            ratelimit.acquire_writes(identity)
            ratelimit.acquire_writes(children)
        assert asked == ["later"]


@pytest.mark.django_db
def test_a_run_turned_away_from_a_long_line_stays_away_half_the_horizon_and_reserves_nothing(
    redis_url: str, prefix: str
) -> None:
    costs = Counter({("sub-a", "writes"): 2})
    # max_defer: SWEEPER_STALE_SECONDS / 2 = 4 s
    with redis_limiter(redis_url, prefix, capacity=2, refill=1, SWEEPER_STALE_SECONDS=8):
        ratelimit.acquire_writes(costs)  # the full bucket
        with ratelimit.deferrable(), pytest.raises(WritesDeferred) as first:
            ratelimit.acquire_writes(costs)  # due in 2 s: reserved
        with ratelimit.deferrable(), pytest.raises(WritesDeferred) as second:
            ratelimit.acquire_writes(costs)  # due in 4 s: reserved, the line is now 4 s deep
        turned_away = []
        for _ in range(5):
            with ratelimit.deferrable(), pytest.raises(WritesDeferred) as deferred:
                # One token, due in 5 s: past max_defer, and only 1 s away from fitting.
                ratelimit.acquire_writes(Counter({("sub-a", "writes"): 1}))
            turned_away.append(deferred.value)
    assert first.value.reserved and second.value.reserved
    assert second.value.countdown == pytest.approx(3.95, abs=0.1)  # max_wait before its tokens
    for deferred in turned_away:
        assert not deferred.reserved
        assert deferred.prepaid_json() == []
        # Not the 1 s until the line is short enough again (then all five would be back at
        # once): at least half of max_defer, spread over a quarter more.
        assert 2.0 <= deferred.countdown <= 3.0
    assert len({round(deferred.countdown, 3) for deferred in turned_away}) > 1


@pytest.mark.django_db
def test_a_retry_after_losing_the_database_asks_for_its_tokens_again(
    redis_url: str, prefix: str
) -> None:
    # Celery's retry resends the message's kwargs, prepaid tokens included, which the run that
    # lost the database may have spent: the retry asks the bucket; a deferral's rerun does not.
    from provisioning.tasks import prepaid_to_spend, provision_identity_request

    costs = Counter({("sub-a", "writes"): 2})
    with redis_limiter(redis_url, prefix, capacity=2, refill=1):
        ratelimit.acquire_writes(costs)
        with ratelimit.deferrable(), pytest.raises(WritesDeferred) as deferred:
            ratelimit.acquire_writes(costs)
        prepaid = deferred.value.prepaid_json()
        for retries, spends_prepaid in ((0, True), (1, False)):
            provision_identity_request.push_request(retries=retries)
            try:
                with ratelimit.deferrable(prepaid_to_spend(provision_identity_request, prepaid)):
                    if spends_prepaid:
                        ratelimit.acquire_writes(costs)
                    else:  # the bucket is empty for 2 s more: asking defers it
                        with pytest.raises(WritesDeferred):
                            ratelimit.acquire_writes(costs)
            finally:
                provision_identity_request.pop_request()
