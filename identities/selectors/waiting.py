"""Waiting for a request to change (the API's `Prefer: wait` long-poll) without holding a
database connection: one indexed primary-key read per poll interval, the connection handed back
between reads, the thread asleep in between."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Count

from identities.models import IdentityRequest, shown_request_status

# A pipeline learns of a change within this; each waiting client costs one cheap query per
# interval (a primary-key lookup with a count of its decisions).
POLL_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class RequestState:
    """The state of a request a reader has seen: its status, when it last moved, how many
    decisions (approvals, rejections) it has, and the status a person reads (`lifecycle_status`:
    a ready request turns "decommissioned" when its identity does, without moving itself). Any
    change to these is a new `etag`."""

    status: str
    updated_at: datetime
    decisions: int
    shown: str

    @property
    def etag(self) -> str:
        digest = hashlib.sha256(
            f"{self.updated_at.isoformat()}|{self.decisions}|{self.shown}".encode()
        )
        # Weak: the same revision is the same request state, not the same bytes (the body's
        # links follow the host it was asked on).
        return f'W/"{self.status}.{digest.hexdigest()[:16]}"'


def state_of(identity_request: IdentityRequest) -> RequestState:
    """The revision of a request read through `identity_requests_visible_to` (its approvals are
    prefetched, so this costs no query)."""
    return RequestState(
        status=identity_request.status,
        updated_at=identity_request.updated_at,
        decisions=len(identity_request.approvals.all()),
        shown=identity_request.shown_status,
    )


def identity_request_state(pk: int) -> RequestState | None:
    """The request's revision now, in one query; None once it is gone. No visibility check:
    callers have checked that the user may see `pk` before they wait on it."""
    row = (
        IdentityRequest.objects.filter(pk=pk)
        .annotate(decision_count=Count("approvals"))
        .values_list("status", "updated_at", "decision_count", "kind", "identity__status")
        .first()
    )
    if row is None:
        return None
    status, updated_at, decisions, kind, identity_status = row
    return RequestState(
        status=status,
        updated_at=updated_at,
        decisions=decisions,
        shown=shown_request_status(status=status, kind=kind, identity_status=identity_status),
    )


def identity_request_wait(
    *,
    pk: int,
    unchanged: Callable[[RequestState], bool],
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RequestState | None:
    """Poll the request's revision until `unchanged(revision)` is false or `timeout` seconds
    have passed; return the last revision read (None: the request is gone). Between reads the
    database connection is closed (outside a transaction), so a thousand waiting pipelines
    hold a thousand sleeping threads, not a thousand connections."""
    deadline = clock() + timeout
    revision = identity_request_state(pk)
    while revision is not None and unchanged(revision):
        remaining = deadline - clock()
        if remaining <= 0:
            break
        _release_connection()
        sleep(min(POLL_INTERVAL_SECONDS, remaining))
        revision = identity_request_state(pk)
    return revision


def _release_connection() -> None:
    # Inside a transaction (a test's, or ATOMIC_REQUESTS, which we do not use) closing would
    # break it; the connection is then the transaction's anyway.
    if not connection.in_atomic_block:
        connection.close()
