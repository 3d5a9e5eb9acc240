"""Throttling (ARM's per-subscription write token bucket) and random fault injection."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

Fault = Literal["500", "timeout"]

# What real ARM reports under the legacy hourly limit when nothing is being throttled.
UNTHROTTLED_REMAINING_WRITES = 1199


class WriteThrottle:
    """One token bucket per subscription; ARM writes (PUT/PATCH/DELETE) take a token each.

    Buckets start full. Changing the capacity or the refill rate refills every bucket, so a test
    that sets the knobs starts from a known state.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._settings: tuple[Any, Any] = (None, None)

    def take(self, key: str, knobs: Mapping[str, Any]) -> tuple[bool, int, int]:
        """Try to take a token: ``(allowed, remaining, retry_after_seconds)``."""
        capacity, refill = knobs["write_bucket_capacity"], knobs["write_bucket_refill_per_second"]
        if capacity is None or refill is None:
            return True, UNTHROTTLED_REMAINING_WRITES, 0
        now = time.monotonic()
        with self._lock:
            if self._settings != (capacity, refill):
                self._settings = (capacity, refill)
                self._buckets.clear()
            tokens, last = self._buckets.get(key, (float(capacity), now))
            tokens = min(float(capacity), tokens + (now - last) * refill)
            if tokens >= 1:
                tokens -= 1
                self._buckets[key] = (tokens, now)
                return True, int(tokens), 0
            self._buckets[key] = (tokens, now)
            # Retry-After is whole seconds; never 0, or clients would hammer us immediately.
            return False, 0, max(1, math.ceil((1 - tokens) / refill))

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


class FaultDice:
    """Decides, per request, whether to inject a 500 or a timeout.

    With ``fault_seed`` set the sequence of decisions is reproducible (reseeded whenever the
    seed knob changes); ``fault_ops`` narrows faults to some HTTP methods or operation kinds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seed: int | None = None
        self._random = random.Random()  # noqa: S311 - fault dice, not cryptography

    def roll(self, knobs: Mapping[str, Any], method: str, op: str) -> Fault | None:
        rate_500, rate_timeout = knobs["fault_rate_500"], knobs["fault_rate_timeout"]
        if not rate_500 and not rate_timeout:
            return None
        allowed = knobs["fault_ops"]
        if allowed is not None:
            methods = {entry.upper() for entry in allowed}
            if method.upper() not in methods and op not in allowed:
                return None
        with self._lock:
            if knobs["fault_seed"] != self._seed:
                self._seed = knobs["fault_seed"]
                self._random.seed(self._seed)
            draw = self._random.random()
        if draw < rate_timeout:
            return "timeout"
        if draw < rate_timeout + rate_500:
            return "500"
        return None

    def reseed(self) -> None:
        """Start the seeded sequence again (after a reset)."""
        with self._lock:
            self._seed = None
