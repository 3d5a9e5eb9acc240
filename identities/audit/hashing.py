"""The chain's hashing: one canonical form of a row and the SHA-256 link over it.

Shared by the writer (record), the walker (chain) and the exporter (export), so the bytes hashed
when a row is written are the bytes checked when it is verified.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from identities.models import AuditEvent


def timestamp_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_payload(event: AuditEvent) -> dict[str, Any]:
    """The hashed content of a row (everything but prev_hash, which is hashed as a prefix)."""
    return {
        "id": event.id,
        "created_at": timestamp_text(event.created_at),
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


def hash_material(
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
    material = hash_material(
        event.prev_hash,
        event.id,
        timestamp_text(event.created_at),
        event.actor_id,
        event.actor_label,
        event.action,
        event.identity_request_id,
        event.identity_id,
        canonical_json(event.data),
    )
    return hashlib.sha256(material).hexdigest()


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
