"""The API's rate limits: DRF's sliding logs, checked in one read and one write of the cache."""

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
from api.throttling import ApiRateThrottle, _wait
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
    # DRF's own keys: counters carry over from its throttle classes.
    history = cache.get(f"throttle_user_{requester.pk}")
    assert isinstance(history, list) and len(history) == 1


def test_a_refusing_limit_does_not_count_the_request_and_the_others_do(
    requester: Any, make_token: TokenFactory, token_client: Any
) -> None:
    client = token_client(make_token(requester, ["read"]))
    with _rates(token="1/min", user="100/min", anon="100/min"):
        statuses = [client.get("/api/v1/me/").status_code for _ in range(3)]

    assert statuses == [200, 429, 429]
    token = ApiToken.objects.get(user=requester)
    assert len(cache.get(f"throttle_token_{token.pk}")) == 1
    assert len(cache.get(f"throttle_user_{requester.pk}")) == 3


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
    ours = _wait(history, number, 60, now)
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
    assert len(cache.get(f"throttle_user_{user.pk}")) == 10
