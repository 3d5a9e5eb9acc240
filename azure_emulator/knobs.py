"""Behaviour knobs: latency, throttling, fault injection and Azure's eventual-consistency delays.

Knobs live in memory only. They start from the defaults below, overridden by ``EMULATOR_<KNOB>``
environment variables at start, and change at runtime through ``PATCH /_emulator/config``.
Every update is validated as a whole before it is applied, so a bad PATCH changes nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class KnobError(ValueError):
    """A knob name or value was refused; the message says which and why."""


def _number(minimum: float, maximum: float = math.inf) -> Callable[[Any], int | float]:
    def check(value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise KnobError("must be a number")
        if not minimum <= value <= maximum:
            raise KnobError(f"must be between {minimum} and {maximum}")
        return value

    return check


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise KnobError("must be an integer")
        if value < minimum or (maximum is not None and value > maximum):
            raise KnobError(f"must be between {minimum} and {maximum or 'any'}")
        return value

    return check


def _optional(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise KnobError("must be true or false")
    return value


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise KnobError("must be a list of non-empty strings")
    return list(value)


def _choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise KnobError(f"must be one of {', '.join(allowed)}")
        return str(value)

    return check


def _choice_int(*allowed: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or value not in allowed:
            raise KnobError(f"must be one of {', '.join(map(str, allowed))}")
        return int(value)

    return check


def _non_empty_string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise KnobError("must be a non-empty string")
    return value


@dataclass(frozen=True)
class Knob:
    """One knob: its default, its validator and what it does."""

    default: Any
    check: Callable[[Any], Any]
    doc: str


KNOBS: dict[str, Knob] = {
    "latency_ms": Knob(0, _number(0, 60_000), "added to every ARM and token request"),
    "write_bucket_capacity": Knob(
        None,
        _optional(_integer(1)),
        "per-subscription ARM write (PUT, PATCH) bucket size; null = no throttling",
    ),
    "write_bucket_refill_per_second": Knob(
        None, _optional(_number(0.001)), "tokens added back per second; null = no throttling"
    ),
    "delete_bucket_capacity": Knob(
        None,
        _optional(_integer(1)),
        "per-subscription ARM DELETE bucket size (its own bucket, as ARM's); null = none",
    ),
    "delete_bucket_refill_per_second": Knob(
        None, _optional(_number(0.001)), "delete tokens added back per second; null = none"
    ),
    "read_bucket_capacity": Knob(
        None,
        _optional(_integer(1)),
        "per-subscription ARM read (GET) bucket size (ARM: 250); null = no read throttling",
    ),
    "read_bucket_refill_per_second": Knob(
        None, _optional(_number(0.001)), "read tokens added back per second (ARM: 25); null = none"
    ),
    "fault_rate_500": Knob(
        0.0, _number(0, 1), "share of requests answered 500 InternalServerError"
    ),
    "fault_rate_timeout": Knob(
        0.0, _number(0, 1), "share of requests held, then dropped unanswered"
    ),
    "fault_timeout_seconds": Knob(
        5.0, _number(0, 600), "how long a timeout fault holds the request"
    ),
    "fault_ops": Knob(
        None,
        _optional(_string_list),
        "faults only for these HTTP methods (PUT) or op kinds (fic.put); null = all",
    ),
    "fault_phase": Knob(
        "before",
        _choice("before", "after"),
        "'after' applies the write first, then loses the response (idempotency tests)",
    ),
    "fault_seed": Knob(None, _optional(_integer(0)), "seed for the fault dice; null = random"),
    "principal_replication_delay_seconds": Knob(
        0.0, _number(0), "a new UAMI is unknown to role assignments without principalType this long"
    ),
    "principal_not_found_even_with_type": Knob(
        False, _boolean, "the replication delay also hits requests that set principalType"
    ),
    "fic_write_ms": Knob(100, _number(0, 60_000), "how long a FIC write occupies its identity"),
    "fic_limit": Knob(20, _integer(1), "federated identity credentials allowed per identity"),
    "fic_limit_error_status": Knob(
        400, _integer(400, 599), "HTTP status when the FIC limit is hit"
    ),
    "fic_limit_error_code": Knob(
        "BadRequest", _non_empty_string, "ARM error code when the FIC limit is hit"
    ),
    "fic_propagation_seconds": Knob(
        0.0, _number(0), "a new FIC is invisible to the token exchange for this long"
    ),
    "fic_propagation_error_code": Knob(
        None,
        _optional(_choice_int(70021, 700211, 700213, 7002138)),
        "while a FIC propagates, answer this AADSTS code; null = as if the FIC did not exist",
    ),
    "fic_mismatch_errors": Knob(
        "current",
        _choice("current", "legacy"),
        "'current': AADSTS700211/700213/7002138 as Entra answers today; 'legacy': 70021 always",
    ),
    "cloud": Knob(
        "public",
        _choice("public", "usgov", "china"),
        "whose ARM token audiences ARM accepts (a token for another cloud's ARM gets 401)",
    ),
    "page_size": Knob(100, _integer(1), "items per page of every ARM list without $top"),
    "graph_quota_queries": Knob(
        None,
        _optional(_integer(1)),
        "Resource Graph queries a caller may send per graph_quota_window_seconds before 429 "
        "RateLimiting (Azure's default: 15); null = no quota (the headers still say 14 left)",
    ),
    "graph_quota_window_seconds": Knob(
        5, _integer(1, 3600), "Resource Graph's per-caller quota window (Azure's default: 5)"
    ),
    "clock_offset_seconds": Knob(
        0,
        _integer(0),
        "seconds the emulator's clock runs ahead of real time (time-bound role assignments end "
        "by it)",
    ),
    "schedule_max_duration_days": Knob(
        None,
        _optional(_integer(1)),
        "a role management policy's Expiration_Admin_Assignment maximum for schedule requests: "
        "a longer one (or one without an end) fails the ExpirationRule; null = no cap",
    ),
    "schedule_request_refused": Knob(
        False,
        _boolean,
        "every role assignment schedule request fails RoleAssignmentRequestPolicyValidationFailed "
        "(a policy refusing time-bound assignments)",
    ),
    "schedule_request_answer_status": Knob(
        None,
        _optional(_non_empty_string),
        "an AdminAssign schedule request is recorded and answered (201) with this `status` of "
        "the 2020-10-01 Status enum (PendingProvisioning, Denied, PendingApproval, ...) and "
        "makes no assignment: to test the engine's reading of it; null = Provisioned, as made",
    ),
    "role_assignment_answer_scope": Knob(
        None,
        _optional(_non_empty_string),
        "a role assignment PUT answers this `properties.scope` instead of the scope it was "
        "written on (a misbehaving ARM, to test the engine's returned-scope check); null = off",
    ),
}


def defaults() -> dict[str, Any]:
    """Every knob at its built-in default."""
    return {name: knob.default for name, knob in KNOBS.items()}


def validated(current: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with ``updates`` applied, or KnobError naming the first bad knob."""
    merged = dict(current)
    for name, value in updates.items():
        knob = KNOBS.get(name)
        if knob is None:
            raise KnobError(f"unknown knob {name!r}; known: {', '.join(sorted(KNOBS))}")
        try:
            merged[name] = knob.check(value)
        except KnobError as exc:
            raise KnobError(f"{name} {exc}") from None
    return merged


def _parse_env_value(name: str, raw: str) -> Any:
    """An env value as JSON when it parses (numbers, true, null, lists), else a plain string.

    ``fault_ops`` also accepts a comma-separated list (``PUT,DELETE``) for shell convenience.
    """
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if name == "fault_ops":
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The defaults overridden by ``EMULATOR_<KNOB>`` variables; KnobError if one is invalid."""
    updates = {
        name: _parse_env_value(name, environ[f"EMULATOR_{name.upper()}"])
        for name in KNOBS
        if f"EMULATOR_{name.upper()}" in environ
    }
    return validated(defaults(), updates)
