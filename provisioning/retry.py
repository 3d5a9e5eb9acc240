"""Retrying transient gateway errors with jittered exponential backoff; Retry-After wins.

Throttling (HTTP 429) is bounded by time rather than by attempts: ARM did nothing and said when
to come back, and when many writers share one subscription's write bucket, each of them can be
turned away several times in a row before its turn comes. Errors marked `wait_out` (a service
of ours restarting, such as the Redis behind the FIC write lock) are waited out the same way.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings

from provisioning import metrics
from provisioning.errors import TransientError

T = TypeVar("T")
logger = logging.getLogger(__name__)


THROTTLED = 429


@dataclass(frozen=True)
class Backoff:
    attempts: int
    base: float
    cap: float
    # Seconds one step may spend waiting out 429s (and `wait_out` errors); those do not use up
    # `attempts`.
    throttle_budget: float = 600.0

    @classmethod
    def from_settings(cls) -> Backoff:
        return cls(
            attempts=settings.PROVISIONING_STEP_ATTEMPTS,
            base=settings.PROVISIONING_BACKOFF_SECONDS,
            cap=settings.PROVISIONING_BACKOFF_MAX_SECONDS,
            throttle_budget=settings.PROVISIONING_THROTTLE_BUDGET_SECONDS,
        )

    def delay(self, attempt: int, error: TransientError) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based).

        A throttled call waits its whole Retry-After: ARM does not process a request sent
        before it has passed and answers it with a new one (learn.microsoft.com, "Understand
        how Azure Resource Manager throttles requests": "If you send a request before the retry
        value has elapsed, your request isn't processed and a new retry value is returned").
        The throttle budget bounds that wait (`with_retries` gives up rather than come back
        early); other errors' Retry-After is capped like the curve, as they spend attempts."""
        if error.retry_after is not None:
            if error.status == THROTTLED or error.wait_out:
                return error.retry_after
            return min(error.retry_after, self.cap)
        return jittered(attempt, base=self.base, cap=self.cap)


def jittered(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): exponential, capped, jittered."""
    # "Equal jitter": half the exponential step is fixed, so waits really grow (replication
    # delays need that), half is random, so many workers hitting one throttle spread out.
    step = min(cap, base * 2 ** (attempt - 1))
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311


def with_retries(
    operation: Callable[[], T],
    *,
    backoff: Backoff,
    on_retry: Callable[[int, TransientError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `operation`, retrying TransientError up to `backoff.attempts` times in all, plus
    any number of 429s for up to `backoff.throttle_budget` seconds of waiting."""
    attempt, throttled, throttled_wait = 1, 0, 0.0
    while True:
        try:
            return operation()
        except TransientError as error:
            if error.status == THROTTLED or error.wait_out:
                reason = "throttled" if error.status == THROTTLED else "wait_out"
                throttled += 1
                wait = backoff.delay(throttled, error)
                if throttled_wait + wait > backoff.throttle_budget:
                    raise
                throttled_wait += wait
            else:
                if attempt >= backoff.attempts:
                    raise
                reason = "transient"
                wait = backoff.delay(attempt, error)
                attempt += 1
            metrics.retry_recorded(reason=reason, code=error.code or "", wait=wait)
            logger.info(
                "transient error (%d failed attempts of %d, %d throttled), retrying in %.2fs: %s",
                attempt - 1,
                backoff.attempts,
                throttled,
                wait,
                error.describe(),
            )
            if on_retry is not None:
                on_retry(attempt - 1 + throttled, error)
            sleep(wait)
