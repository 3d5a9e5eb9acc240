"""Throttling (ARM's per-subscription write token bucket) and random fault injection."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

Fault = Literal["500", "timeout"]

# ARM's token buckets (Learn "Understand how Azure Resource Manager throttles requests",
# azure-docs articles/azure-resource-manager/management/request-limits-and-throttling.md, the
# "Regional throttling and token bucket algorithm" section): per subscription and principal,
# reads 250 refilled at 25/s, deletes 200 at 10/s, writes 200 at 10/s, each its own bucket; a
# global subscription limit across principals of 15 times that. Unthrottled answers carry the
# remaining counts after one request, as transcribed from live ARM in 2025-2026
# ("x-ms-ratelimit-remaining-subscription-writes: 199",
# "x-ms-ratelimit-remaining-subscription-global-writes: 2999", reads 249 / 3749).
BUCKET_SIZES = {"reads": 250, "writes": 200, "deletes": 200}
# The knobs of each bucket: reads (GET, and LIST pages) have their own, "Subscription | reads |
# 250 | 25" in the same table; a bucket is off until both of its knobs are set.
KNOB_PREFIXES = {"reads": "read", "writes": "write", "deletes": "delete"}
GLOBAL_FACTOR = 15


def unthrottled_remaining(kind: str) -> tuple[int, int]:
    """(remaining for this principal, remaining globally) after one request of ``kind``."""
    size = BUCKET_SIZES[kind]
    return size - 1, size * GLOBAL_FACTOR - 1


class WriteThrottle:
    """One token bucket per subscription and kind (``writes`` for PUT/PATCH, ``deletes`` for
    DELETE: ARM gives deletes their own bucket; ``reads`` for GET); each request takes a token.

    Buckets start full. Changing a capacity or refill rate refills every bucket, so a test that
    sets the knobs starts from a known state.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._settings: dict[str, tuple[Any, Any]] = {}

    def take(
        self, key: str, knobs: Mapping[str, Any], kind: str = "writes"
    ) -> tuple[bool, int, int]:
        """Try to take a token: ``(allowed, remaining, retry_after_seconds)``."""
        prefix = KNOB_PREFIXES[kind]
        capacity = knobs[f"{prefix}_bucket_capacity"]
        refill = knobs[f"{prefix}_bucket_refill_per_second"]
        if capacity is None or refill is None:
            return True, unthrottled_remaining(kind)[0], 0
        now = time.monotonic()
        with self._lock:
            if self._settings.get(kind) != (capacity, refill):
                self._settings[kind] = (capacity, refill)
                for bucket in [b for b in self._buckets if b[1] == kind]:
                    del self._buckets[bucket]
            tokens, last = self._buckets.get((key, kind), (float(capacity), now))
            tokens = min(float(capacity), tokens + (now - last) * refill)
            if tokens >= 1:
                tokens -= 1
                self._buckets[(key, kind)] = (tokens, now)
                return True, int(tokens), 0
            self._buckets[(key, kind)] = (tokens, now)
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
