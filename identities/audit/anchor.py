"""Anchoring the audit chain outside the database: signed checkpoints in a write-once sink.

A checkpoint says "the chain had `rows` rows and row `rows` hashed to `head_hash` at `at`". It is
signed (HMAC with SECRET_KEY) and linked to the checkpoint before it (`prev` = SHA-256 of that
checkpoint's line), and appended to a sink the database's owner cannot rewrite:

- `folder` (development): one read-only file per checkpoint, created exclusively (O_EXCL), never
  opened for writing again;
- `blob` (production): one Azure Storage append blob; give its container a time-based retention
  (immutability) policy with protected append writes allowed, so blocks can be added and none
  changed or deleted, not even by the storage account's owner, until the retention ends.

Checking the chain against the sink (every full chain check, so `manage.py audit_verify` too)
finds what deleting chain-check records together with the newest audit rows hides from the
chain's own checks: a chain shorter than a checkpoint (a cut tail), a row whose hash is not the
one anchored (a rewrite), and a checkpoint missing from the sink (a gap in the sequence, a broken
link, or fewer checkpoints than the trail's `audit.anchored` rows say were written).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from identities.audit.actions import CHAIN_CHECK_ACTIONS, AuditAction
from identities.audit.chain import chain_end, stored_hash
from identities.audit.record import audit_record
from identities.models import AuditEvent

logger = logging.getLogger(__name__)

ANCHORED_ACTION = AuditAction.CHAIN_ANCHORED
# A passed full check anchors what it verified and names the checkpoint in its verdict row.
CHECK_VERDICTS = tuple(CHAIN_CHECK_ACTIONS.values())
_SALT = "identities.audit_anchor"


class AnchorError(Exception):
    """The sink could not be written or read."""


class AnchorSink(Protocol):
    """Where checkpoints go: appended, one line each, and read back in order."""

    def append(self, seq: int, line: str) -> None: ...

    def read(self) -> list[str]: ...

    def describe(self) -> str: ...

    def unprotected(self) -> str: ...


class FolderSink:
    """One read-only file per checkpoint, created exclusively: nothing is ever overwritten."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def append(self, seq: int, line: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"checkpoint-{seq:010d}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError as exc:
            raise AnchorError(f"checkpoint {seq} exists already in {self.folder}") from exc
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        files = sorted(self.folder.glob("checkpoint-*.json"))
        return [path.read_text(encoding="ascii").strip() for path in files]

    def describe(self) -> str:
        return f"folder {self.folder}"

    def unprotected(self) -> str:
        """A folder is write-once for the portal only; say so once, it is for development."""
        return ""


class BlobSink:
    """One Azure Storage append blob; a line per appended block."""

    def __init__(
        self, *, container: str, name: str, account_url: str = "", connection_string: str = ""
    ) -> None:
        from azure.storage.blob import ContainerClient

        if connection_string:  # Azurite, or a key-based account (development only)
            self.container = ContainerClient.from_connection_string(connection_string, container)
        else:  # production: the portal's own identity (workload identity on AKS)
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
            self.container = ContainerClient(account_url, container, credential=credential)
        self.client = self.container.get_blob_client(name)
        self.url = self.client.url

    def append(self, seq: int, line: str) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        try:
            # if_none_match="*": never truncate a blob that exists (creating one empties it).
            with contextlib.suppress(ResourceExistsError):
                self.client.create_append_blob(if_none_match="*")
            self.client.append_block((line + "\n").encode("ascii"))
        except AzureError as exc:
            raise AnchorError(f"could not append checkpoint {seq} to {self.url}: {exc}") from exc

    def read(self) -> list[str]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            text = self.client.download_blob().readall().decode("ascii")
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise AnchorError(f"could not read {self.url}: {exc}") from exc
        return [line for line in text.splitlines() if line.strip()]

    def describe(self) -> str:
        return f"append blob {self.url}"

    def unprotected(self) -> str:
        """Why the container does not keep the checkpoints from being deleted ("" if it does)."""
        from azure.core.exceptions import AzureError

        container = self.client._get_container_client()
        try:
            properties = container.get_container_properties()
        except AzureError as exc:
            return f"its container's policies could not be read: {exc}"
        if (
            properties.has_immutability_policy
            or properties.immutable_storage_with_versioning_enabled
        ):
            return ""
        return (
            f"container {properties.name} has no immutability policy: whoever holds the storage "
            "account can delete or replace the checkpoints"
        )


def configured_sink() -> AnchorSink | None:
    """The sink AUDIT_ANCHOR_SINK names (`folder`, `blob`), or None (`none`: no anchoring)."""
    kind = settings.AUDIT_ANCHOR_SINK
    if kind == "folder":
        return FolderSink(Path(settings.AUDIT_ANCHOR_DIR))
    if kind == "blob":
        return BlobSink(
            container=settings.AUDIT_ANCHOR_BLOB_CONTAINER,
            name=settings.AUDIT_ANCHOR_BLOB_NAME,
            account_url=settings.AUDIT_ANCHOR_BLOB_ACCOUNT_URL,
            connection_string=settings.AUDIT_ANCHOR_BLOB_CONNECTION_STRING,
        )
    return None


@dataclass(frozen=True)
class Checkpoint:
    """One anchored state of the chain."""

    seq: int
    rows: int
    head_hash: str
    at: str
    prev: str
    sig: str

    def material(self) -> str:
        return f"{self.seq}|{self.rows}|{self.head_hash}|{self.at}|{self.prev}"

    def line(self) -> str:
        fields = ("seq", "rows", "head_hash", "at", "prev", "sig")
        return json.dumps({name: getattr(self, name) for name in fields}, sort_keys=True)


def _sign(material: str, key: str) -> str:
    return salted_hmac(_SALT, material, secret=key, algorithm="sha256").hexdigest()


def _authentic(checkpoint: Checkpoint) -> bool:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return any(constant_time_compare(_sign(checkpoint.material(), k), checkpoint.sig) for k in keys)


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.encode("ascii")).hexdigest()


def _parse(line: str) -> Checkpoint:
    raw: dict[str, Any] = json.loads(line)
    return Checkpoint(
        int(raw["seq"]), int(raw["rows"]), raw["head_hash"], raw["at"], raw["prev"], raw["sig"]
    )


def checkpoint_append(
    *, rows: int, head_hash: str, sink: AnchorSink | None = None
) -> Checkpoint | None:
    """Append a signed checkpoint of (rows, head_hash) to the sink (None: no sink configured).
    The caller records it on the trail (a full check's verdict row, or anchor_chain's row)."""
    sink = sink or configured_sink()
    if sink is None or rows == 0:
        return None
    lines = sink.read()
    last = _parse(lines[-1]) if lines else None
    seq = (last.seq + 1) if last else 1
    prev = _line_hash(lines[-1]) if lines else ""
    unsigned = Checkpoint(seq, rows, head_hash, timezone.now().isoformat(), prev, "")
    checkpoint = replace(unsigned, sig=_sign(unsigned.material(), settings.SECRET_KEY))
    sink.append(seq, checkpoint.line())
    return checkpoint


def anchor_chain(*, sink: AnchorSink | None = None) -> Checkpoint | None:
    """Anchor the chain as it is now (the periodic task), and record it on the trail.

    Skipped (None) when there is no sink, the chain is empty, or only bookkeeping (anchor
    records, chain-check verdicts) was appended since the last checkpoint, so an idle trail does
    not grow by itself. The checkpoint is written to the sink first; its audit row follows.
    """
    sink = sink or configured_sink()
    if sink is None:
        return None
    lines = sink.read()
    rows = chain_end()
    if lines:
        since = AuditEvent.objects.filter(id__gt=_parse(lines[-1]).rows).exclude(
            action__in=[ANCHORED_ACTION, *CHECK_VERDICTS]
        )
        if not since.exists():
            return None
    checkpoint = checkpoint_append(rows=rows, head_hash=stored_hash(rows) or "", sink=sink)
    if checkpoint is None:
        return None
    audit_record(
        actor=None,
        action=ANCHORED_ACTION,
        data={
            "seq": checkpoint.seq,
            "rows": checkpoint.rows,
            "head_hash": checkpoint.head_hash,
            "sink": sink.describe(),
        },
    )
    return checkpoint


@dataclass(frozen=True)
class AnchorVerdict:
    """What the sink says about the chain: ok, or the first problem found and where."""

    ok: bool
    checkpoints: int
    broken_id: int | None = None
    reason: str = ""


def anchor_verify(*, rows: int, sink: AnchorSink | None = None) -> AnchorVerdict:
    """Compare a chain that walked clean for `rows` rows with every checkpoint in the sink."""
    sink = sink or configured_sink()
    if sink is None:
        return AnchorVerdict(True, 0)
    try:
        lines = sink.read()
    except AnchorError as exc:
        return AnchorVerdict(False, 0, None, f"the anchor sink could not be read: {exc}")
    where = sink.describe()
    previous = ""
    checkpoints: list[Checkpoint] = []
    for position, line in enumerate(lines, start=1):
        try:
            checkpoint = _parse(line)
        except (ValueError, KeyError, TypeError):
            reason = f"checkpoint {position} in {where} is unreadable"
            return AnchorVerdict(False, position, None, reason)
        if checkpoint.seq != position or checkpoint.prev != previous:
            return AnchorVerdict(
                False,
                position,
                None,
                f"checkpoint {position} is missing from {where} (found checkpoint "
                f"{checkpoint.seq} in its place, or its link to the one before is broken)",
            )
        if not _authentic(checkpoint):
            reason = f"checkpoint {position} in {where} is not signed by the portal"
            return AnchorVerdict(False, position, None, reason)
        previous = _line_hash(line)
        checkpoints.append(checkpoint)
    missing = _missing_recorded(checkpoints)
    if missing:
        return AnchorVerdict(
            False,
            len(checkpoints),
            None,
            f"the audit trail records checkpoint {missing} (an {ANCHORED_ACTION} row), but "
            f"{where} does not hold it as recorded: checkpoints were removed or replaced",
        )
    for checkpoint in reversed(checkpoints):  # the newest contradiction is the most telling
        made = _when(checkpoint.at)
        if checkpoint.rows > rows:
            return AnchorVerdict(
                False,
                len(checkpoints),
                rows + 1,
                f"the chain ends at row {rows}, but checkpoint {checkpoint.seq} of {made} in "
                f"{where} anchored it at row {checkpoint.rows}: rows {rows + 1}.."
                f"{checkpoint.rows} were cut from its end",
            )
        if stored_hash(checkpoint.rows) != checkpoint.head_hash:
            return AnchorVerdict(
                False,
                len(checkpoints),
                checkpoint.rows,
                f"row {checkpoint.rows} no longer has the hash checkpoint {checkpoint.seq} of "
                f"{made} anchored: the chain up to it was rewritten",
            )
    return AnchorVerdict(True, len(checkpoints))


def _missing_recorded(checkpoints: list[Checkpoint]) -> int | None:
    """The first checkpoint the trail records (an `audit.anchored` row, or a passed check's
    verdict naming its checkpoint) that the sink lacks or holds with other rows or another head
    hash, if any."""
    held = {c.seq: (c.rows, c.head_hash) for c in checkpoints}
    recorded = AuditEvent.objects.filter(action__in=[ANCHORED_ACTION, CHECK_VERDICTS[0]])
    rows = recorded.order_by("id").values_list("action", "data")
    for action, data in rows.iterator(chunk_size=5000):
        if not isinstance(data, dict):
            continue
        if action == ANCHORED_ACTION:
            seq, anchored = int(data.get("seq") or 0), int(data.get("rows") or 0)
            head_hash: str | None = str(data.get("head_hash", ""))
        else:
            if not data.get("checkpoint"):
                continue
            seq, anchored, head_hash = int(data["checkpoint"]), int(data["rows_checked"]), None
        found = held.get(seq)
        if found is None or found[0] != anchored or head_hash not in (None, found[1]):
            return seq
    return None


def _when(at: str) -> str:
    try:
        return f"{datetime.fromisoformat(at):%Y-%m-%d %H:%M} UTC"
    except ValueError:
        return at
