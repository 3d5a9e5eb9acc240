"""The append-only, hash-chained audit trail: the one writer, the verifier and the exporter.

Every service calls `audit_record()` inside the transaction that makes its change, so the row
commits or rolls back with it. Appends are serialized (PostgreSQL: a transaction-scoped advisory
lock; SQLite: transactions are IMMEDIATE, see settings) so each row's `prev_hash` is the hash of
the row committed just before it and the chain cannot fork. Call `audit_record()` as the last
write of a transaction: the lock is held until commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from identities.models import GENESIS_HASH, AuditEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from identities.models import Identity, IdentityRequest

SYSTEM_ACTOR_LABEL = "system"
# pg_advisory_xact_lock key for the audit chain ("WIAUDIT" in ASCII); any stable bigint will do.
AUDIT_LOCK_KEY = 0x57_49_41_55_44_49_54


def audit_record(
    *,
    actor: User | None,
    action: str,
    identity_request: IdentityRequest | None = None,
    identity: Identity | None = None,
    data: dict[str, Any] | None = None,
    actor_label: str | None = None,
) -> AuditEvent:
    """Append one row to the chain in the caller's transaction (None actor = the system).

    `data` is stored as JSON (datetimes, UUIDs and decimals become strings); `actor_label`
    overrides the recorded name, e.g. "worker@host" for a system actor.
    """
    with transaction.atomic():
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
        event.save(force_insert=True)
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


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_payload(event: AuditEvent) -> dict[str, Any]:
    """The hashed content of a row (everything but prev_hash, which is hashed as a prefix)."""
    return {
        "id": event.id,
        "created_at": _timestamp(event.created_at),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "identity_request_id": event.identity_request_id,
        "identity_id": event.identity_id,
        "data": event.data,
    }


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII only: one byte string per value."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def event_hash(event: AuditEvent) -> str:
    """SHA-256 over the previous row's hash followed by the canonical JSON of this row."""
    material = event.prev_hash + canonical_json(event_payload(event))
    return hashlib.sha256(material.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain; `broken_id` is the first row that does not verify."""

    ok: bool
    rows_checked: int
    last_hash: str
    broken_id: int | None = None
    reason: str = ""


def audit_verify_chain(*, chunk_size: int = 2000) -> ChainReport:
    """Walk the whole chain in id order and report the first row that breaks it."""
    prev_id, prev_hash, checked = 0, GENESIS_HASH, 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=chunk_size):
        reason = ""
        if event.id != prev_id + 1:
            reason = (
                f"row {event.id} follows row {prev_id}: "
                f"row(s) {prev_id + 1}..{event.id - 1} are missing"
            )
        elif event.prev_hash != prev_hash:
            reason = (
                f"row {event.id} does not link to row {prev_id}: its prev_hash is not the hash "
                f"of row {prev_id} (row {prev_id} was altered or replaced)"
            )
        elif event_hash(event) != event.hash:
            reason = f"row {event.id} does not match its hash: the row was altered"
        if reason:
            return ChainReport(False, checked, prev_hash, broken_id=event.id, reason=reason)
        prev_id, prev_hash = event.id, event.hash
        checked += 1
    return ChainReport(True, checked, prev_hash)


EXPORT_FIELDS = (
    "id",
    "created_at",
    "actor_id",
    "actor_label",
    "action",
    "identity_request_id",
    "identity_id",
    "data",
    "prev_hash",
    "hash",
)


def audit_export_rows(*, chunk_size: int = 2000) -> Iterator[dict[str, Any]]:
    """Every row in chain order, as the verified payload plus its two hashes (streamed)."""
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=chunk_size):
        yield {**event_payload(event), "prev_hash": event.prev_hash, "hash": event.hash}
