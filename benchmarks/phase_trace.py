"""A benchmark-only trace of where the engine's time goes: ARM calls, SQL, the audit chain.

`install()` (after `django.setup()`) records, per thread, the wall-clock interval of
- every ARM call: `provisioning.azure._azure`, the context every gateway call runs in, is wrapped;
- every SQL statement, through a Django execute wrapper put on each connection as it is made
  (the `connection_created` signal) and on the ones already open;
- every commit (`BaseDatabaseWrapper.commit`), marked as the audit's when its transaction took
  the chain's lock (the lock is held until that commit).

Statements are classified by their text: `pg_advisory_xact_lock` is the wait for the chain's lock,
any statement on the audit table is the audit's write. `breakdown()` then splits a window of wall
clock (approval → ready) into exclusive shares, each instant counted once, in this priority:
ARM wait (at least one call in flight), audit lock wait, audit write (incl. its commits), other
DB (statements and commits), and the rest (Python, thread hand-off). Nothing of the portal is
changed on disk; the benchmark imports this, the portal never does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

CATEGORIES = ("arm", "audit_lock", "audit_write", "db", "other")
_PRIORITY = {name: n for n, name in enumerate(reversed(CATEGORIES))}

_events: list[tuple[str, float, float]] = []
_events_lock = threading.Lock()
_local = threading.local()


def _add(category: str, start: float, end: float) -> None:
    with _events_lock:
        _events.append((category, start, end))


def reset() -> None:
    with _events_lock:
        _events.clear()


def events() -> list[tuple[str, float, float]]:
    with _events_lock:
        return list(_events)


def _execute_wrapper(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
) -> Any:
    text = sql if isinstance(sql, str) else str(sql)
    if "pg_advisory_xact_lock" in text:
        category = "audit_lock"
        _local.chain_locked = True
    elif "identities_auditevent" in text:
        category = "audit_write"
    else:
        category = "db"
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        _add(category, started, time.perf_counter())


def _wrap_connection(connection: Any) -> None:
    if _execute_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(_execute_wrapper)


def install() -> None:
    """Start recording (idempotent). Call after django.setup()."""
    if getattr(install, "done", False):
        return
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.signals import connection_created

    import provisioning.azure as azure

    def on_connect(sender: Any, connection: Any, **_kwargs: Any) -> None:
        _wrap_connection(connection)

    connection_created.connect(on_connect, weak=False)
    for connection in connections.all():
        _wrap_connection(connection)

    original_commit = BaseDatabaseWrapper.commit

    def commit(self: Any) -> None:
        started = time.perf_counter()
        try:
            original_commit(self)
        finally:
            locked = getattr(_local, "chain_locked", False)
            _local.chain_locked = False
            _add("audit_write" if locked else "db", started, time.perf_counter())

    BaseDatabaseWrapper.commit = commit  # type: ignore[method-assign]

    original_azure = azure._azure

    @contextlib.contextmanager
    def traced_azure(operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            with original_azure(operation):
                yield
        finally:
            _add("arm", started, time.perf_counter())

    azure._azure = traced_azure  # type: ignore[assignment]
    install.done = True  # type: ignore[attr-defined]


def breakdown(start: float, end: float, resolution: float = 0.0001) -> dict[str, float]:
    """Seconds of [start, end] per category, exclusive (each instant once, by priority)."""
    slots = max(1, int((end - start) / resolution) + 1)
    owner = [_PRIORITY["other"]] * slots
    for category, began, finished in events():
        if finished < start or began > end:
            continue
        rank = _PRIORITY[category]
        first = max(0, int((began - start) / resolution))
        last = min(slots - 1, int((finished - start) / resolution))
        for slot in range(first, last + 1):
            if owner[slot] < rank:
                owner[slot] = rank
    totals = dict.fromkeys(CATEGORIES, 0.0)
    names = {rank: name for name, rank in _PRIORITY.items()}
    for rank in owner:
        totals[names[rank]] += resolution
    scale = (end - start) / (slots * resolution)
    return {name: value * scale for name, value in totals.items()}


def arm_calls(start: float, end: float) -> list[tuple[float, float]]:
    """The ARM calls that began inside [start, end], as (start, end) offsets from `start`."""
    return sorted(
        (began - start, finished - start)
        for category, began, finished in events()
        if category == "arm" and start <= began <= end
    )
