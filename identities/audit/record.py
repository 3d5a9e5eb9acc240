"""The append-only, hash-chained audit trail: the one writer.

Every service calls `audit_record()` inside the transaction that makes its change, so the row
commits or rolls back with it. Appends are serialized (PostgreSQL: a transaction-scoped advisory
lock; SQLite: transactions are IMMEDIATE, see settings) so each row's `prev_hash` is the hash of
the row committed just before it and the chain cannot fork. Call `audit_record()` as the last
write of a transaction: the lock is held until commit.

`audit_batch()` appends several rows in one transaction (a provisioning phase's Azure writes):
the first row takes the lock and reads the chain's tail, the rest chain on from the row just
written, without taking the lock or reading the tail again, since the lock is held until commit.
Inside a batch, `audit_rows_deferred()` goes further: the rows are hashed and chained as they
are recorded but inserted together, in one statement, when its block ends.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from identities.audit.actions import AuditAction
from identities.audit.hashing import event_hash
from identities.models import GENESIS_HASH, AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from identities.models import Identity, IdentityRequest

SYSTEM_ACTOR_LABEL = "system"
# pg_advisory_xact_lock key for the audit chain ("WIAUDIT" in ASCII); any stable bigint will do.
AUDIT_LOCK_KEY = 0x57_49_41_55_44_49_54

# Per thread (a thread has its own connection): the open batch's tail, [(id, hash)] once its first
# row is written, [] before; None outside a batch. `pending`: the rows audit_rows_deferred() holds
# until its block ends; None outside one.
_batch = threading.local()


@contextlib.contextmanager
def audit_batch(*, savepoint: bool = True) -> Iterator[None]:
    """One transaction in which every `audit_record()` appends under one acquisition of the
    chain's lock. Nested, it joins the outer batch. Anything that fails inside rolls the whole
    transaction back (the rows are not written in savepoints), so the tail it kept is dropped.
    Inside a transaction it sets a savepoint of its own, unless `savepoint=False`: a caller
    whose transaction ends on any error inside (a durable one) saves the two statements.
    Code inside that catches an error and goes on wraps its call in `audit_rollback_guard()`.
    """
    if getattr(_batch, "tail", None) is not None:
        yield
        return
    with transaction.atomic(savepoint=savepoint):
        _batch.tail = []
        try:
            yield
        finally:
            _batch.tail = None


@contextlib.contextmanager
def audit_rows_deferred() -> Iterator[None]:
    """Inside `audit_batch()`: each row `audit_record()` appends is numbered, hashed and chained
    at once (the returned event has its id and hash), and all of them are inserted in one
    statement when the block ends without an error (a phase's k records: one INSERT, not k).
    Inside, nothing may read the audit table for those rows; other rows may reference them
    (the foreign keys are checked at commit). Nested, it joins the outer block."""
    if getattr(_batch, "tail", None) is None:
        raise RuntimeError("audit_rows_deferred() runs inside audit_batch()")
    if getattr(_batch, "pending", None) is not None:
        yield
        return
    pending: list[AuditEvent] = []
    _batch.pending = pending
    try:
        yield
    finally:
        _batch.pending = None
    AuditEvent.objects.bulk_create(pending)


@contextlib.contextmanager
def audit_rollback_guard() -> Iterator[None]:
    """Around a call inside `audit_batch()` whose error the caller catches and goes on from
    (the call's own savepoint rolled its rows back): on an error, the batch's tail goes back to
    the row before the call and the rows it appended to `audit_rows_deferred()` are dropped, so
    the next row chains to a row that exists and no row of the undone change is inserted.
    Outside a batch it does nothing."""
    tail: list[tuple[int, str]] | None = getattr(_batch, "tail", None)
    pending: list[AuditEvent] | None = getattr(_batch, "pending", None)
    kept_tail = list(tail) if tail is not None else None
    kept = len(pending) if pending is not None else 0
    try:
        yield
    except BaseException:
        if tail is not None and kept_tail is not None:
            tail[:] = kept_tail
        if pending is not None:
            del pending[kept:]
        raise


def audit_record(
    *,
    actor: User | None,
    action: AuditAction,
    identity_request: IdentityRequest | None = None,
    identity: Identity | None = None,
    data: dict[str, Any] | None = None,
    actor_label: str | None = None,
) -> AuditEvent:
    """Append one row to the chain in the caller's transaction (None actor = the system).

    `data` is stored as JSON (datetimes, UUIDs and decimals become strings); `actor_label`
    overrides the recorded name, e.g. "worker@host" for a system actor.
    """
    tail: list[tuple[int, str]] | None = getattr(_batch, "tail", None)
    # No savepoint: a row that fails fails the caller's whole transaction, never just itself,
    # so no change commits without its audit row.
    with transaction.atomic(savepoint=False):
        if tail:
            prev_id, prev_hash = tail[0]
        else:
            _lock_chain()
            last = AuditEvent.objects.order_by("-id").values_list("id", "hash").first()
            prev_id, prev_hash = last if last is not None else (0, GENESIS_HASH)
        if actor_label is None:
            actor_label = actor.get_username() if actor is not None else SYSTEM_ACTOR_LABEL
        event = AuditEvent(
            id=prev_id + 1,
            created_at=timezone.now(),
            actor=actor,
            actor_label=actor_label,
            action=action,
            identity_request=identity_request,
            identity=identity,
            data=_json_normalized(data or {}),
            prev_hash=prev_hash,
        )
        event.hash = event_hash(event)
        pending: list[AuditEvent] | None = getattr(_batch, "pending", None)
        if pending is not None:
            pending.append(event)
        else:
            event.save(force_insert=True)
        if tail is not None:
            tail[:] = [(event.id, event.hash)]
        return event


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [AUDIT_LOCK_KEY])
    # SQLite: the enclosing transaction began IMMEDIATE and already holds the write lock.


def _json_normalized(value: Any) -> Any:
    """Make `value` exactly what the JSON column gives back, so the hash survives a round trip.

    Integral floats become ints because PostgreSQL's jsonb prints 1e16 as 10000000000000000.
    """
    loaded = json.loads(json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False))
    return _integral_floats_to_int(loaded)


def _integral_floats_to_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats_to_int(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats_to_int(item) for item in value]
    return value
