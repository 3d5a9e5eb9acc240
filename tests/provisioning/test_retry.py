"""The engine's retry loop: transient errors retried with backoff, Retry-After honoured."""

from __future__ import annotations

import pytest

from provisioning.errors import PermanentError, TransientError
from provisioning.retry import Backoff, jittered, with_retries


class Flaky:
    """Fails with the given errors in order, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_transient_errors_are_retried_until_success() -> None:
    sleeps: list[float] = []
    operation = Flaky(TransientError("throttled"), TransientError("busy"))
    result = with_retries(operation, backoff=Backoff(5, 0.5, 10), sleep=sleeps.append)
    assert result == "ok"
    assert operation.calls == 3
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_retry_after_from_azure_wins_over_the_backoff_curve() -> None:
    sleeps: list[float] = []
    operation = Flaky(TransientError("429", status=429, retry_after=7))
    with_retries(operation, backoff=Backoff(3, 0.1, 30), sleep=sleeps.append)
    assert sleeps == [7]


def test_retry_after_is_capped() -> None:
    sleeps: list[float] = []
    operation = Flaky(TransientError("503", status=503, retry_after=3600))
    with_retries(operation, backoff=Backoff(3, 0.1, 30), sleep=sleeps.append)
    assert sleeps == [30]


def test_a_throttled_call_waits_its_whole_retry_after_never_coming_back_early() -> None:
    """ARM answers a request sent before Retry-After has passed with a new Retry-After, so a
    429's wait is not capped like the curve; past the throttle budget the step gives up."""
    sleeps: list[float] = []
    operation = Flaky(TransientError("429", status=429, retry_after=45))
    with_retries(operation, backoff=Backoff(3, 0.1, 30, 600), sleep=sleeps.append)
    assert sleeps == [45]
    too_long = Flaky(TransientError("429", status=429, retry_after=700))
    with pytest.raises(TransientError):
        with_retries(too_long, backoff=Backoff(3, 0.1, 30, 600), sleep=sleeps.append)
    assert (too_long.calls, sleeps) == (1, [45])


def test_gives_up_after_the_configured_attempts_with_the_last_error() -> None:
    operation = Flaky(*(TransientError(f"try {n}") for n in range(10)))
    with pytest.raises(TransientError, match="try 2"):
        with_retries(operation, backoff=Backoff(3, 0, 0), sleep=lambda _: None)
    assert operation.calls == 3


def test_permanent_errors_are_not_retried() -> None:
    operation = Flaky(PermanentError("bad scope", code="InvalidScope"))
    with pytest.raises(PermanentError):
        with_retries(operation, backoff=Backoff(5, 0, 0), sleep=lambda _: None)
    assert operation.calls == 1


def test_describe_names_code_status_and_request_id() -> None:
    error = PermanentError("assign role", code="AuthorizationFailed", status=403, request_id="abc")
    assert (
        error.describe()
        == "assign role (Azure code AuthorizationFailed, HTTP 403) [request id abc]"
    )


def test_waits_grow_even_with_jitter() -> None:
    backoff = Backoff(10, 1.0, 30)
    error = TransientError("x")
    for attempt in range(1, 6):
        assert backoff.delay(attempt, error) >= 2 ** (attempt - 1) / 2


def test_the_database_backoff_doubles_within_its_jitter_and_stops_at_the_cap() -> None:
    for attempt in range(1, 12):
        step = min(30.0, 2.0 ** (attempt - 1))
        waits = {jittered(attempt, base=1.0, cap=30.0) for _ in range(50)}
        assert all(step / 2 <= wait <= step for wait in waits), (attempt, waits)
        assert len(waits) > 1  # jittered: many workers losing the database spread out


def test_throttling_does_not_use_up_the_attempts() -> None:
    """Many writers on one subscription's write bucket: one call can get 429 many times."""
    sleeps: list[float] = []
    operation = Flaky(
        *(TransientError("429", status=429, retry_after=1) for _ in range(12)),
        TransientError("busy", status=503),
    )
    result = with_retries(operation, backoff=Backoff(2, 0, 30, 60), sleep=sleeps.append)
    assert result == "ok"
    assert operation.calls == 14
    assert sleeps == [1] * 12 + [0]


def test_throttling_gives_up_once_its_waiting_budget_is_spent() -> None:
    sleeps: list[float] = []
    operation = Flaky(*(TransientError(f"429 #{n}", status=429, retry_after=4) for n in range(9)))
    with pytest.raises(TransientError, match="429 #3"):
        with_retries(operation, backoff=Backoff(8, 0, 30, 12), sleep=sleeps.append)
    assert sleeps == [4, 4, 4]


def test_throttling_without_retry_after_backs_off_exponentially() -> None:
    sleeps: list[float] = []
    operation = Flaky(*(TransientError("429", status=429) for _ in range(4)))
    with_retries(operation, backoff=Backoff(1, 1.0, 30, 600), sleep=sleeps.append)
    assert [round(s) for s in sleeps] != [1, 1, 1, 1]
    assert sleeps[3] >= 4


def test_a_service_of_ours_restarting_is_waited_out_for_the_budget_not_the_attempts() -> None:
    """Redis behind the FIC lock restarting: more failures than attempts, still no failure."""
    sleeps: list[float] = []
    operation = Flaky(*(TransientError("lock", code="LockUnavailable", wait_out=True),) * 6)
    result = with_retries(operation, backoff=Backoff(2, 1.0, 2.0, 60), sleep=sleeps.append)
    assert result == "ok"
    assert operation.calls == 7
    assert len(sleeps) == 6 and all(0.5 <= s <= 2.0 for s in sleeps)

    endless = Flaky(*(TransientError("lock", wait_out=True),) * 100)
    with pytest.raises(TransientError):
        with_retries(endless, backoff=Backoff(2, 1.0, 2.0, 10), sleep=sleeps.append)
