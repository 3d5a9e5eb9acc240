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


# One JSON encoder for every canonical form. JSONEncoder.encode() builds a new C encoder on
# each call, which was a third of audit_verify's time at a million rows, so keep one built
# C encoder when the interpreter has it (tests check both give the same bytes as json.dumps).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
# json's own C encoder (None on interpreters without it; not in the type stubs).
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_canonical = (
    _c_make_encoder(
        None,  # no circular-reference check: values are JSON round-tripped before they get here
        _CANONICAL.default,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )
    if _c_make_encoder is not None
    else None
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII only: one byte string per value."""
    if _c_canonical is not None:
        return "".join(_c_canonical(value, 0))
    return _CANONICAL.encode(value)


_ascii_str = json.encoder.encode_basestring_ascii


def _hash_material(
    prev_hash: str,
    event_id: int,
    created_at: str,
    actor_id: int | None,
    actor_label: str,
    action: str,
    identity_request_id: int | None,
    identity_id: int | None,
    data_json: str,
    /,
) -> bytes:
    """prev_hash + canonical_json(event_payload(event)), written out in sorted key order without
    building the dict (the verifier does this a million times; a test pins the equality)."""
    return (
        f'{prev_hash}{{"action":{_ascii_str(action)},'
        f'"actor_id":{"null" if actor_id is None else int(actor_id)},'
        f'"actor_label":{_ascii_str(actor_label)},"created_at":"{created_at}",'
        f'"data":{data_json},"id":{int(event_id)},'
        f'"identity_id":{"null" if identity_id is None else int(identity_id)},'
        f'"identity_request_id":'
        f"{'null' if identity_request_id is None else int(identity_request_id)}}}"
    ).encode("ascii")


def event_hash(event: AuditEvent) -> str:
    """SHA-256 over the previous row's hash followed by the canonical JSON of this row."""
    material = _hash_material(
        event.prev_hash,
        event.id,
        _timestamp(event.created_at),
        event.actor_id,
        event.actor_label,
        event.action,
        event.identity_request_id,
        event.identity_id,
        canonical_json(event.data),
    )
    return hashlib.sha256(material).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking the chain; `broken_id` is the first row that does not verify."""

    ok: bool
    rows_checked: int
    last_hash: str
    broken_id: int | None = None
    reason: str = ""


def audit_verify_chain(*, chunk_size: int = 10_000, processes: int = 1) -> ChainReport:
    """Walk the whole chain in id order and report the first row that breaks it.

    With `processes` > 1 on PostgreSQL, outside a transaction, a long chain is walked in that
    many slices by forked processes and joined here: the same checks and the same report.
    """
    # The walker imports this module's hashing; imported here to keep the import one-way.
    from identities.audit_chain import verify_chain

    return verify_chain(chunk_size=chunk_size, processes=processes)


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
