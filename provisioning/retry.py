"""Retrying transient gateway errors with jittered exponential backoff; Retry-After wins."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings

from provisioning.errors import TransientError

T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    attempts: int
    base: float
    cap: float

    @classmethod
    def from_settings(cls) -> Backoff:
        return cls(
            attempts=settings.PROVISIONING_STEP_ATTEMPTS,
            base=settings.PROVISIONING_BACKOFF_SECONDS,
            cap=settings.PROVISIONING_BACKOFF_MAX_SECONDS,
        )

    def delay(self, attempt: int, error: TransientError) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        if error.retry_after is not None:
            return min(error.retry_after, self.cap)
        # "Equal jitter": half the exponential step is fixed, so waits really grow (replication
        # delays need that), half is random, so many workers hitting one throttle spread out.
        step = min(self.cap, self.base * 2 ** (attempt - 1))
        return step / 2 + random.uniform(0, step / 2)  # noqa: S311


def with_retries(
    operation: Callable[[], T],
    *,
    backoff: Backoff,
    on_retry: Callable[[int, TransientError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `operation`, retrying TransientError up to `backoff.attempts` times in all."""
    attempt = 1
    while True:
        try:
            return operation()
        except TransientError as error:
            if attempt >= backoff.attempts:
                raise
            wait = backoff.delay(attempt, error)
            logger.info(
                "transient error (attempt %d/%d), retrying in %.2fs: %s",
                attempt,
                backoff.attempts,
                wait,
                error.describe(),
            )
            if on_retry is not None:
                on_retry(attempt, error)
            sleep(wait)
            attempt += 1
