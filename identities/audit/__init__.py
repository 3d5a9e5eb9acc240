"""The append-only, hash-chained audit trail, in one package.

- `actions`: the AuditAction names every writer and reader uses.
- `record`: `audit_record()`, the one writer (serialized appends, each row hashing the last),
  and `audit_batch()`, several appends in one transaction under one acquisition of the lock
  (`audit_rows_deferred()`: their rows inserted in one statement; `audit_rollback_guard()`
  around a call whose error the caller catches and goes on from).
- `hashing`: the canonical form of a row and its SHA-256 link.
- `chain`: walking the chain (whole, in slices, or the tail since an anchor) and signing checks.
- `checks`: the recorded, signed chain checks (start, run, finish).
- `selectors`: who may read which events; the anchor and verdict the audit page shows.
- `export`: CSV and JSON Lines, streamed.

Import the writer from here: `from identities.audit import audit_record`.
"""

from identities.audit.chain import ChainReport, audit_verify_chain
from identities.audit.hashing import canonical_json, event_hash, event_payload
from identities.audit.record import (
    SYSTEM_ACTOR_LABEL,
    audit_batch,
    audit_record,
    audit_rollback_guard,
    audit_rows_deferred,
)

__all__ = [
    "SYSTEM_ACTOR_LABEL",
    "ChainReport",
    "audit_batch",
    "audit_record",
    "audit_rollback_guard",
    "audit_rows_deferred",
    "audit_verify_chain",
    "canonical_json",
    "event_hash",
    "event_payload",
]
