"""The append-only, hash-chained audit trail: the one writer, the verifier and the exporter.

Every service calls `audit_record()` inside the transaction that makes its change, so the row
commits or rolls back with it. Appends are serialized (PostgreSQL: a transaction-scoped advisory
lock; SQLite: transactions are IMMEDIATE, see settings) so each row's `prev_hash` is the hash of
the row committed just before it and the chain cannot fork. Call `audit_record()` as the last
write of a transaction: the lock is held until commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
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


def audit_verify_chain(*, chunk_size: int = 10_000) -> ChainReport:
    """Walk the whole chain in id order and report the first row that breaks it."""
    prev_id, prev_hash, checked = 0, GENESIS_HASH, 0
    sha256 = hashlib.sha256
    with _chain_batches(chunk_size) as (batches, as_timestamp, as_json):
        for batch in batches:
            for (
                row_id,
                created_at,
                actor_id,
                actor_label,
                action,
                identity_request_id,
                identity_id,
                data,
                row_prev_hash,
                row_hash,
            ) in batch:
                reason = ""
                if row_id != prev_id + 1:
                    reason = (
                        f"row {row_id} follows row {prev_id}: "
                        f"row(s) {prev_id + 1}..{row_id - 1} are missing"
                    )
                elif row_prev_hash != prev_hash:
                    reason = (
                        f"row {row_id} does not link to row {prev_id}: its prev_hash is not the "
                        f"hash of row {prev_id} (row {prev_id} was altered or replaced)"
                    )
                else:
                    material = _hash_material(
                        row_prev_hash,
                        row_id,
                        as_timestamp(created_at),
                        actor_id,
                        actor_label,
                        action,
                        identity_request_id,
                        identity_id,
                        as_json(data),
                    )
                    if sha256(material).hexdigest() != row_hash:
                        reason = f"row {row_id} does not match its hash: the row was altered"
                if reason:
                    return ChainReport(False, checked, prev_hash, broken_id=row_id, reason=reason)
                prev_id, prev_hash = row_id, row_hash
                checked += 1
    return ChainReport(True, checked, prev_hash)


# PostgreSQL formats the timestamp exactly as _timestamp() does and hands over the JSON as text:
# that spares the per-row datetime and jsonb loaders, half of the verifier's time at 1M rows.
_CHAIN_QUERY = """
    SELECT id,
           to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           actor_id, actor_label, action, identity_request_id, identity_id, data::text,
           prev_hash, hash
    FROM identities_auditevent ORDER BY id
"""
Batches = Iterable[Iterable[tuple[Any, ...]]]


@contextlib.contextmanager
def _chain_batches(
    chunk_size: int,
) -> Iterator[tuple[Batches, Callable[[Any], str], Callable[[Any], str]]]:
    """Every row in id order as plain values (no model instances), in batches, with the
    functions that turn its created_at and data into their hashed text."""
    if connection.vendor != "postgresql":
        # The export's columns are the chain's, in the order the loop unpacks them.
        rows = AuditEvent.objects.order_by("id").values_list(*EXPORT_FIELDS)
        yield [rows.iterator(chunk_size=chunk_size)], _timestamp, canonical_json
        return
    # raw_decode skips decode()'s whitespace checks: jsonb's text output has none to skip.
    decode = json.JSONDecoder().raw_decode
    # A server-side cursor lives in a transaction; inside a caller's, it sees the caller's rows.
    with (
        transaction.atomic(),
        connection.connection.cursor(name="audit_verify") as cursor,
    ):
        cursor.execute(_CHAIN_QUERY)
        with _prefetched(cursor, chunk_size) as batches:
            yield batches, str, lambda text: canonical_json(decode(text)[0])


@contextlib.contextmanager
def _prefetched(cursor: Any, size: int) -> Iterator[Batches]:
    """The cursor's rows in batches, the next one fetched by a thread while this one is hashed:
    psycopg releases the GIL while it waits, so PostgreSQL reads rows on another core."""
    queued: queue.Queue[list[tuple[Any, ...]] | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set() and (rows := cursor.fetchmany(size)):
                queued.put(rows)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            queued.put(exc)
            return
        queued.put(None)

    def batches() -> Iterator[list[tuple[Any, ...]]]:
        while (batch := queued.get()) is not None:
            if isinstance(batch, BaseException):
                raise batch
            yield batch

    thread = threading.Thread(target=produce, name="audit-verify-fetch", daemon=True)
    thread.start()
    try:
        yield batches()
    finally:
        # Done, or stopped early at a broken row: the producer must finish before the cursor
        # closes (drain the queue so that a producer blocked on put() sees the stop flag).
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                queued.get(timeout=0.05)
        thread.join()


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
