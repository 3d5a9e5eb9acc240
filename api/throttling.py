"""Rate limits per API token, per user and per anonymous client address.

Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] ("token", "user", "anon"), read when a
request is checked so overriding the setting takes effect. A token request counts against its
token and its user, so minting more tokens does not raise a user's limit. Counters live in the
default cache: a folder every process of the machine shares, or Redis with CACHE_URL.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache as default_cache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from api.permissions import request_token

# DRF's spelling of a counter's key and of a rate's period (SimpleRateThrottle.parse_rate).
CACHE_FORMAT = "throttle_%(scope)s_%(ident)s"
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'600/min' -> (600, 60): requests allowed, and the window in seconds."""
    number, period = rate.split("/")
    return int(number), PERIODS[period[0]]


class ApiRateThrottle(BaseThrottle):
    """The token, user and anonymous limits, each DRF's sliding log of request times (the same
    keys, windows and Retry-After as `SimpleRateThrottle`), checked together: one read of every
    counter that applies (`get_many`, one MGET on Redis) and one write (`set_many`, one
    pipeline). One DRF throttle class per limit read and wrote its own counter: four round
    trips per token request, about 1 ms of every API call.

    A limit that refuses does not count the request; the others do (as DRF, which asks every
    throttle). The wait is the longest of the refusing limits'."""

    cache = default_cache

    def __init__(self) -> None:
        self.waits: list[float] = []

    def limits(self, request: Request) -> list[tuple[str, int, int]]:
        """(cache key, requests allowed, window in seconds) of each limit that applies."""
        rates = api_settings.DEFAULT_THROTTLE_RATES
        user = request.user
        signed_in = bool(user and user.is_authenticated)
        token = request_token(request)
        idents = [
            ("token", token.pk if token is not None else None),
            ("user", user.pk if signed_in else None),
            ("anon", None if signed_in else self.get_ident(request)),
        ]
        found = []
        for scope, ident in idents:
            rate = rates.get(scope)
            if ident is not None and rate is not None:
                key = CACHE_FORMAT % {"scope": scope, "ident": ident}
                found.append((key, *parse_rate(str(rate))))
        return found

    def allow_request(self, request: Request, view: Any) -> bool:
        limits = self.limits(request)
        if not limits:
            return True
        stored = self.cache.get_many([key for key, _number, _window in limits])
        now = time.time()
        self.waits = []
        counted: dict[int, dict[str, list[float]]] = {}
        for key, number, window in limits:
            # Newest first; drop the times that have left the window.
            history = [at for at in stored.get(key, []) if at > now - window]
            if len(history) >= number:
                self.waits.append(_wait(history, number, window, now))
            else:
                counted.setdefault(window, {})[key] = [now, *history]
        for window, values in counted.items():
            self.cache.set_many(values, window)
        return not self.waits

    def wait(self) -> float | None:
        return max(self.waits) if self.waits else None


def _wait(history: list[float], number: int, window: int, now: float) -> float:
    """SimpleRateThrottle.wait: the rest of the window over the requests it will free (where
    DRF gives no wait, a log longer than a lowered limit, the rest of the window)."""
    remaining = window - (now - history[-1]) if history else window
    available = number - len(history) + 1
    return remaining / available if available > 0 else remaining
