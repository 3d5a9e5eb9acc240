"""The API's rate limits: DRF's sliding logs, checked in one atomic step on each cache."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.cache import cache
from django.test import override_settings
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ApiToken
from api.throttling import ApiRateThrottle, _wait, check_limits, logged_requests
from tests.api.test_tokens import TokenFactory
from tests.support.services import redis_url_or_missing


class CountingCache:
    """The real default cache, counting the calls the throttle makes on it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        self.calls.append("get_many")
        return dict(cache.get_many(keys))

    def set_many(self, values: dict[str, Any], timeout: int) -> list[str]:
        self.calls.append("set_many")
        return list(cache.set_many(values, timeout))


@pytest.fixture
def counting_cache() -> Iterator[CountingCache]:
    counting = CountingCache()
    ApiRateThrottle.cache = counting  # type: ignore[assignment]
    try:
        yield counting
    finally:
        ApiRateThrottle.cache = cache


def _rates(**rates: str) -> Any:
    from django.conf import settings

    return override_settings(
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    )


def test_a_token_request_reads_and_writes_its_counters_once_each(
    requester: Any,
    make_token: TokenFactory,
    token_client: Any,
    counting_cache: CountingCache,
) -> None:
    client = token_client(make_token(requester, ["read"]))

    assert client.get("/api/v1/me/").status_code == 200

    assert counting_cache.calls == ["get_many", "set_many"]
    # DRF's own keys and lists on a cache other than Redis: counters carry over from its
    # throttle classes. (Redis keeps each log as a sorted set, read with logged_requests.)
    history = cache.get(f"throttle_user_{requester.pk}")
    assert isinstance(history, list) and len(history) == 1


def test_a_refusing_limit_does_not_count_the_request_and_the_others_do(
    requester: Any, make_token: TokenFactory, token_client: Any, throttle_cache: str
) -> None:
    client = token_client(make_token(requester, ["read"]))
    with _rates(token="1/min", user="100/min", anon="100/min"):
        statuses = [client.get("/api/v1/me/").status_code for _ in range(3)]

    assert statuses == [200, 429, 429]
    token = ApiToken.objects.get(user=requester)
    assert logged_requests(cache, f"throttle_token_{token.pk}") == 1
    assert logged_requests(cache, f"throttle_user_{requester.pk}") == 3


def test_anonymous_callers_are_limited_per_address() -> None:
    # Every endpoint asks for a signed-in caller before throttling, so this limit guards only
    # what may one day allow anonymous calls: checked on the throttle itself.
    factory = APIRequestFactory()

    def anonymous(address: str) -> Request:
        request = Request(factory.get("/api/v1/me/", REMOTE_ADDR=address))
        request.user = AnonymousUser()
        return request

    with _rates(token="100/min", user="100/min", anon="2/min"):
        allowed = [ApiRateThrottle().allow_request(anonymous("192.0.2.1"), None) for _ in range(3)]
        other = ApiRateThrottle().allow_request(anonymous("192.0.2.7"), None)
        refused = ApiRateThrottle()
        refused.allow_request(anonymous("192.0.2.1"), None)

    assert allowed == [True, True, False]
    assert other, "the limit is per client address"
    assert refused.wait() is not None and 0 < refused.wait() <= 60  # type: ignore[operator]


@pytest.mark.parametrize(("logged", "number"), [(2, 2), (5, 3), (0, 0)])
def test_the_wait_is_drfs(logged: int, number: int) -> None:
    now = 1_000_000.0
    history = [now - 10 * n for n in range(logged)]
    drf = SimpleRateThrottle.__new__(SimpleRateThrottle)
    drf.history, drf.now, drf.num_requests, drf.duration = list(history), now, number, 60
    throttle = ApiRateThrottle()
    expected = drf.wait()
    ours = _wait(len(history), history[-1] if history else None, number, 60, now)
    if expected is None:
        # DRF gives no wait when the log outgrew a lowered limit; the rest of the window here.
        assert ours == 60 - (now - history[-1])
    else:
        assert ours == pytest.approx(expected)
    assert throttle.wait() is None


def _signed_in(user: Any) -> Request:
    request = Request(APIRequestFactory().get("/api/v1/me/"))
    request.user = user
    return request


def _race(user: Any, callers: int) -> list[bool]:
    """`callers` threads check one user's limit at the same instant (each its own throttle,
    as each request has)."""
    start = threading.Barrier(callers)

    def check(_: int) -> bool:
        request = _signed_in(user)
        start.wait()
        return ApiRateThrottle().allow_request(request, None)

    with ThreadPoolExecutor(max_workers=callers) as pool:
        return list(pool.map(check, range(callers)))


@pytest.fixture(params=["file", "redis"])
def throttle_cache(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """The two caches the portal runs on: the folder (no CACHE_URL) and Redis (CACHE_URL)."""
    if request.param == "file":
        backend = {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    else:
        backend = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url_or_missing(),
            "KEY_PREFIX": f"throttle-race-{uuid.uuid4().hex}",
        }
    with override_settings(CACHES={"default": backend}):
        yield request.param
        cache.clear()


def test_concurrent_requests_of_one_caller_never_pass_more_than_its_limit(
    throttle_cache: str,
) -> None:
    # A read then a write let each of c parallel callers read the same log and write back its
    # own entry, so c of them counted as one: 40 at once passed a limit of 10 several times
    # over. The check is one atomic step on both caches.
    user = User(pk=4242, username="burst")
    with _rates(token="100/min", user="10/min", anon="100/min"):
        first = _race(user, 40)
        second = _race(user, 20)

    assert first.count(True) == 10, f"{throttle_cache}: {first.count(True)} of 40 passed"
    assert second.count(True) == 0
    assert logged_requests(cache, f"throttle_user_{user.pk}") == 10


def test_each_cache_keeps_drfs_sliding_log(throttle_cache: str) -> None:
    # The same calls on both caches: Redis runs its own copy of the log (a sorted set in a Lua
    # script), which must decide and wait exactly as DRF's list does on the file cache.
    start = 1_000_000.0
    two_a_minute = [("throttle_user_7", 2, 60)]

    assert check_limits(cache, two_a_minute, start) == []
    assert check_limits(cache, two_a_minute, start + 10) == []
    # Full: the rest of the window from the oldest time (DRF: 60 - 20, over 1 request to free).
    assert check_limits(cache, two_a_minute, start + 20) == [pytest.approx(40.0)]
    assert logged_requests(cache, "throttle_user_7") == 2, "a refused request is not logged"
    # DRF keeps times after now - window: at start + 60 the first has left the window.
    assert check_limits(cache, two_a_minute, start + 59.5) == [pytest.approx(0.5)]
    assert check_limits(cache, two_a_minute, start + 60) == []
    assert check_limits(cache, two_a_minute, start + 60) == [pytest.approx(10.0)]
    # A limit lowered below the log's length: the rest of the window, as `_wait` gives.
    assert check_limits(cache, [("throttle_user_7", 1, 60)], start + 61) == [pytest.approx(9.0)]
    # Two requests at the same instant are two entries.
    same = [("throttle_token_3", 5, 60)]
    assert check_limits(cache, same, start) == check_limits(cache, same, start) == []
    assert logged_requests(cache, "throttle_token_3") == 2


def test_a_list_left_by_the_previous_release_does_not_break_the_check() -> None:
    # Before the sorted sets, Redis held each log as a pickled list under DRF's key; a process
    # of that release may still write one during a rolling deploy. The sorted set lives under a
    # key of its own, so neither release meets the other's type (WRONGTYPE).
    backend = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_url_or_missing(),
        "KEY_PREFIX": f"throttle-old-{uuid.uuid4().hex}",
    }
    with override_settings(CACHES={"default": backend}):
        try:
            cache.set("throttle_user_9", [1_000_000.0], 60)
            assert check_limits(cache, [("throttle_user_9", 1, 60)], 1_000_001.0) == []
            assert cache.get("throttle_user_9") == [1_000_000.0]
            assert logged_requests(cache, "throttle_user_9") == 1
        finally:
            cache.clear()
