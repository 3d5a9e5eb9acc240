"""Long-polls (`Prefer: wait=N`) hold a web thread each, so only so many run at once: per user
(API_WAIT_MAX_PER_PRINCIPAL, counted in the cache across processes) and per process
(API_WAIT_MAX_PER_PROCESS). A wait over a cap is answered at once without Preference-Applied,
and a slot is given back however the call ends."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import override_settings

from identities.models import IdentityRequest, TeamMembership
from identities.selectors.waiting import wait_slot, waits_running
from tests.api.conftest import FileRequest, TokenFactory
from tests.support.services import redis_url_or_missing, wait_until

TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)

Answer = tuple[Any, float]  # the response and how long it took


@pytest.fixture(params=["file", "redis"])
def slot_cache(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
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
            "KEY_PREFIX": f"long-poll-{uuid.uuid4().hex}",
        }
    with override_settings(CACHES={"default": backend}):
        yield request.param
        cache.clear()


def long_poll(client: Any, identity_request: IdentityRequest, wait: int) -> Answer:
    started = time.monotonic()
    response = client.get(
        f"/api/v1/identity-requests/{identity_request.pk}/?since=pending",
        HTTP_PREFER=f"wait={wait}",
    )
    return response, time.monotonic() - started


def in_threads(calls: list[tuple[Any, IdentityRequest, int]]) -> tuple[list[Answer], Any]:
    """Start a long-poll per call in a thread of its own; (their answers once joined, join)."""
    answers: list[Answer] = []

    def run(client: Any, identity_request: IdentityRequest, wait: int) -> None:
        try:
            answers.append(long_poll(client, identity_request, wait))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=call) for call in calls]
    for thread in threads:
        thread.start()

    def join() -> None:
        for thread in threads:
            thread.join(timeout=30)

    return answers, join


def assert_waited(answer: Answer, wait: int) -> None:
    response, elapsed = answer
    assert response.status_code == 200
    assert response["Preference-Applied"] == f"wait={wait}"
    assert elapsed >= wait - 0.2


def assert_answered_at_once(answer: Answer) -> None:
    response, elapsed = answer
    assert (response.status_code, response.json()["status"]) == (200, "pending")
    assert "Preference-Applied" not in response, "the wait preference was ignored"
    assert "ETag" in response
    assert elapsed < 1.5


@TRANSACTIONAL
@override_settings(API_WAIT_MAX_PER_PRINCIPAL=2, API_WAIT_MAX_PER_PROCESS=10)
def test_a_third_concurrent_long_poll_of_one_user_is_answered_at_once(
    slot_cache: str,
    requester: Any,
    make_token: TokenFactory,
    token_client: Any,
    file_request: FileRequest,
) -> None:
    pending_request = file_request()
    # Two tokens of one user: minting more tokens does not buy more waits.
    tokens = [make_token(requester, ["read"]) for _ in range(3)]

    answers, join = in_threads([(token_client(raw), pending_request, 3) for raw in tokens[:2]])
    assert wait_until(lambda: waits_running() == 2, timeout=10)
    third = long_poll(token_client(tokens[2]), pending_request, 3)
    join()
    after = long_poll(token_client(tokens[2]), pending_request, 1)

    assert_answered_at_once(third)
    assert len(answers) == 2
    for answer in answers:
        assert_waited(answer, 3)
    assert_waited(after, 1)  # the two slots were given back when their waits ended
    assert waits_running() == 0


@TRANSACTIONAL
@override_settings(API_WAIT_MAX_PER_PRINCIPAL=10, API_WAIT_MAX_PER_PROCESS=2)
def test_a_process_lets_only_so_many_users_wait_at_once(
    requester: Any,
    teammate: Any,
    approver: Any,
    make_token: TokenFactory,
    token_client: Any,
    file_request: FileRequest,
) -> None:
    pending_request = file_request()
    clients = [token_client(make_token(user, ["read"])) for user in (requester, teammate, approver)]

    answers, join = in_threads([(client, pending_request, 3) for client in clients[:2]])
    assert wait_until(lambda: waits_running() == 2, timeout=10)
    third = long_poll(clients[2], pending_request, 3)
    join()

    assert_answered_at_once(third)
    assert len(answers) == 2
    for answer in answers:
        assert_waited(answer, 3)


def test_slots_are_given_back_when_the_waiting_call_raises(slot_cache: str) -> None:
    with override_settings(API_WAIT_MAX_PER_PRINCIPAL=2, API_WAIT_MAX_PER_PROCESS=2):
        for _ in range(3):
            with pytest.raises(ConnectionError), wait_slot(waiter=7, timeout=3) as held:
                assert held
                raise ConnectionError("the database went away mid-wait")

        with (
            wait_slot(waiter=7, timeout=3) as first,
            wait_slot(waiter=7, timeout=3) as second,
            wait_slot(waiter=7, timeout=3) as third,
        ):
            assert (first, second, third) == (True, True, False)
        with wait_slot(waiter=7, timeout=3) as again:
            assert again
    assert waits_running() == 0


def test_a_refused_slot_is_not_counted(slot_cache: str) -> None:
    with override_settings(API_WAIT_MAX_PER_PRINCIPAL=1, API_WAIT_MAX_PER_PROCESS=5):
        with wait_slot(waiter=8, timeout=3) as held:
            for _ in range(5):
                with wait_slot(waiter=8, timeout=3) as refused:
                    assert (held, refused) == (True, False)
            with wait_slot(waiter=9, timeout=3) as other_user:
                assert other_user, "the cap is per user"
                assert waits_running() == 2
            assert waits_running() == 1
        assert waits_running() == 0


@TRANSACTIONAL
@override_settings(API_WAIT_MAX_PER_PRINCIPAL=2, API_WAIT_MAX_PER_PROCESS=10)
def test_waits_that_end_in_an_error_give_their_slots_back(
    teammate: Any,
    make_token: TokenFactory,
    token_client: Any,
    file_request: FileRequest,
) -> None:
    # The teammate leaves the team while waiting: reading the request again after the wait is
    # a 404 raised inside the slot.
    pending_request = file_request()
    client = token_client(make_token(teammate, ["read"]))

    answers, join = in_threads([(client, pending_request, 2), (client, pending_request, 2)])
    assert wait_until(lambda: waits_running() == 2, timeout=10)
    TeamMembership.objects.filter(user=teammate).delete()
    join()
    assert waits_running() == 0
    TeamMembership.objects.create(user=teammate, team=pending_request.team)
    again, join_again = in_threads([(client, pending_request, 1), (client, pending_request, 1)])
    join_again()

    assert [response.status_code for response, _ in answers] == [404, 404]
    assert len(again) == 2
    for answer in again:
        assert_waited(answer, 1)
