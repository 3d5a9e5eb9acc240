"""Exporting audit rows as CSV or JSON Lines, fast enough to stream a million of them.

Every exported row carries the hashed fields exactly as they are hashed (the timestamp text
and the canonical JSON of `data`) plus `prev_hash` and `hash`, so a copy of the whole chain can
be re-verified offline. Rows come as plain values (no model instances, no joins), and on
PostgreSQL with the timestamp and JSON as text, as the chain walker reads them; the output is
handed over in blocks of about 64 KB rather than a write per row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.db.models import QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from identities.audit.chain import CREATED_AT_TEXT_SQL
from identities.audit.hashing import EXPORT_FIELDS, canonical_json, timestamp_text
from identities.models import AuditEvent

FORMATS = ("csv", "jsonl")
BLOCK_CHARS = 64 * 1024

_ascii_str = json.encoder.encode_basestring_ascii
# OWASP's CSV injection rule: a cell starting with one of these is read as a formula (or, for
# tab and CR, can hide one) by spreadsheet software, so it gets a leading single quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """`value` as a CSV cell a spreadsheet will not evaluate (CSV only: JSON Lines stay exact)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def export_values(
    events: QuerySet[AuditEvent], *, chunk_size: int = 5000
) -> Iterator[tuple[Any, ...]]:
    """The rows of `events`, in its order, as EXPORT_FIELDS tuples with `created_at` as the
    hashed text and `data` as its canonical JSON text."""
    if connection.vendor != "postgresql":
        for row in events.values_list(*EXPORT_FIELDS).iterator(chunk_size=chunk_size):
            created_at, data = timestamp_text(row[1]), canonical_json(row[7])
            yield (row[0], created_at, *row[2:7], data, row[8], row[9])
        return
    rows = events.annotate(
        export_created=RawSQL(CREATED_AT_TEXT_SQL, []),  # noqa: S611 - a constant, no user input
        export_data=Cast("data", TextField()),
    ).values_list(
        "id",
        "export_created",
        "actor_id",
        "actor_label",
        "action",
        "identity_request_id",
        "identity_id",
        "export_data",
        "prev_hash",
        "hash",
    )
    # raw_decode skips decode()'s whitespace checks: jsonb's text output has none to skip.
    decode = json.JSONDecoder().raw_decode
    for row in rows.iterator(chunk_size=chunk_size):
        yield (*row[:7], canonical_json(decode(row[7])[0]), row[8], row[9])


def json_line(row: tuple[Any, ...]) -> str:
    """canonical_json() of the row as an object (data nested, not as a string), written out in
    sorted key order without building the dict (a test pins the equality)."""
    (
        row_id,
        created_at,
        actor_id,
        actor_label,
        action,
        identity_request_id,
        identity_id,
        data_json,
        prev_hash,
        row_hash,
    ) = row
    return (
        f'{{"action":{_ascii_str(action)},'
        f'"actor_id":{"null" if actor_id is None else int(actor_id)},'
        f'"actor_label":{_ascii_str(actor_label)},"created_at":"{created_at}",'
        f'"data":{data_json},"hash":"{row_hash}","id":{int(row_id)},'
        f'"identity_id":{"null" if identity_id is None else int(identity_id)},'
        f'"identity_request_id":'
        f"{'null' if identity_request_id is None else int(identity_request_id)},"
        f'"prev_hash":"{prev_hash}"}}\n'
    )


def export_blocks(events: QuerySet[AuditEvent], fmt: str) -> Iterator[str]:
    """The export of `events` as text blocks of about BLOCK_CHARS (CSV with a header row, or
    one JSON object per line); `fmt` is one of FORMATS."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    buffer = io.StringIO()
    write_row: Any
    if fmt == "csv":
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_FIELDS)

        def write_row(row: tuple[Any, ...]) -> None:
            writer.writerow([csv_safe(value) for value in row])
    else:

        def write_row(row: tuple[Any, ...]) -> None:
            buffer.write(json_line(row))

    for row in export_values(events):
        write_row(row)
        if buffer.tell() >= BLOCK_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate(0)
    if buffer.tell():
        yield buffer.getvalue()
