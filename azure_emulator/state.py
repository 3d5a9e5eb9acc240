"""The emulator's persistent state: a JSON document in the state directory and its journal.

Guarantees: every mutation happens under ``Store.lock`` and is on disk before its request is
answered: appended to ``state.journal`` (a line per resource entry it changed), which the next
start replays onto ``state.json``, the last snapshot (written atomically: temporary file +
``os.replace``). A crash leaves the snapshot whole and at worst a torn last journal line, of a
change never answered, so no answered change is lost. The tenant id,
the portal's service principal and the Entra signing key are created on first start and kept
by ``reset()``; everything else is a resource that ``reset()`` drops.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure_emulator import keys
from azure_emulator.tls import write_private

FORMAT = 1
RESOURCE_KINDS = (
    "principals",
    "identities",
    "fics",
    "role_assignments",
    "clusters",
    "service_accounts",
    "users",
    "inventory",
    "schedule_requests",
)


# The journal is folded into a new snapshot once it is larger than the snapshot and this.
JOURNAL_MIN_BYTES = 1 << 20


def _empty_resources() -> dict[str, dict[str, Any]]:
    return {kind: {} for kind in RESOURCE_KINDS}


class _Tracked(dict[str, Any]):
    """A resource map that notes, while a mutation is open (`touched` is a set), every key it
    hands out by key or changes: the entries the mutation may have changed."""

    touched: set[str] | None = None

    def _note(self, key: str) -> None:
        if self.touched is not None:
            self.touched.add(key)

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self._note(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._note(key)
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self._note(key)
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        changes = dict(*args, **kwargs)
        for key in changes:
            self._note(key)
        super().update(changes)

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self._note(key)
        return key, value

    def clear(self) -> None:
        if self.touched is not None:
            self.touched.update(self.keys())
        super().clear()


def _apply(data: dict[str, Any], entry: dict[str, Any]) -> None:
    """One journal line onto a document: an entry set or removed, or a whole map replaced."""
    kind = entry["kind"]
    if "all" in entry:
        data[kind] = entry["all"]
    elif "value" in entry:
        data[kind][entry["key"]] = entry["value"]
    else:
        data[kind].pop(entry["key"], None)


class Store:
    """All emulated resources and the emulator's own identity, persisted after each change.

    ``data`` layout (keys of the resource maps are lower-cased ids so lookups ignore case):

    - ``identities``: resource id -> UAMI record
    - ``fics``: identity resource id -> {fic name -> FIC record}
    - ``role_assignments``: assignment name (GUID) -> record (names are tenant-wide unique)
    - ``principals``: object id -> extra directory principals registered by the control API
    - ``clusters``: cluster uuid -> sandbox cluster (with its signing key and API token)
    - ``service_accounts``: cluster uuid -> {"ns/name" -> ServiceAccount + field owners}
    - ``users``: object id -> directory users who can sign in (see ``signin``)
    - ``inventory``: resource id -> registered subscription, resource group or resource
      (see ``inventory``)
    - ``schedule_requests``: request name (GUID) -> role assignment schedule request (see
      ``schedules``); its assignment is in ``role_assignments`` with ``expires_at``
    """

    def __init__(self, state_dir: Path, *, verify_journal: bool = False) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "state.json"
        self.journal_path = state_dir / "state.journal"
        # Re-entrant: a handler holding the lock may call helpers that take it again.
        self.lock = threading.RLock()
        self.data: dict[str, Any] = {}
        # Bumped by every inventory registration; inventory.Index is rebuilt when it changes.
        self.inventory_version = 0
        self.inventory_index: Any = None
        # Resource groups deleted out of band (control API, inventory.delete_group), lower-cased
        # ids: ARM's proxy answers 404 under them. In memory only; cleared by a reset.
        self.deleted_groups: set[str] = set()
        self._generation = 0
        self._journal_fd = -1
        self._journal_bytes = 0
        self._snapshot_bytes = 0
        self._depth = 0  # open mutation blocks (nested ones join the outermost)
        # Tests: after each change, the document replayed from the journal must equal the one
        # in memory (a handler that changed an entry it did not touch fails its request).
        self._shadow: dict[str, Any] | None = {} if verify_journal else None

    def open(self) -> None:
        """Load the document and replay its journal, or create the tenant, portal principal and
        keys on first start; then write a fresh snapshot and start an empty journal."""
        with self.lock:
            if self.path.exists():
                self.data = json.loads(self.path.read_text())
                if self.data.get("format") != FORMAT:
                    raise ValueError(f"{self.path} has format {self.data.get('format')!r}")
                for kind in RESOURCE_KINDS:
                    self.data.setdefault(kind, {})
                self._generation = int(self.data.get("generation", 0))
                self._replay(self._generation)
            else:
                self.data = {
                    "format": FORMAT,
                    "tenant_id": str(uuid.uuid4()),
                    "portal": {
                        "client_id": str(uuid.uuid4()),
                        "object_id": str(uuid.uuid4()),
                        "client_secret": secrets.token_urlsafe(32),
                    },
                    "entra_key": keys.generate(),
                    **_empty_resources(),
                }
            for kind in RESOURCE_KINDS:
                self.data[kind] = _Tracked(self.data[kind])
            self._compact()
            self._write_portal_client()

    def _replay(self, generation: int) -> None:
        """Apply the journal written after the snapshot of `generation` (one written for an
        older snapshot is already in this one). A torn last line (a kill mid-write) was never
        answered: it and anything after it are dropped."""
        if not self.journal_path.exists():
            return
        lines = self.journal_path.read_bytes().split(b"\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            return
        if header.get("generation") != generation:
            return
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                break
            _apply(self.data, entry)

    def _write_portal_client(self) -> None:
        portal = self.data["portal"]
        document = {
            "tenant_id": self.data["tenant_id"],
            "client_id": portal["client_id"],
            "client_secret": portal["client_secret"],
        }
        write_private(
            self.state_dir / "portal-client.json", json.dumps(document, indent=2).encode()
        )

    def _compact(self) -> None:
        """Under the lock: the snapshot of the next generation, atomically, then its empty
        journal. A crash between the two leaves the older journal, which names the older
        generation and is not replayed (the new snapshot holds all of it)."""
        self._generation += 1
        self.data["generation"] = self._generation
        payload = json.dumps(self.data, sort_keys=True).encode()
        write_private(self.path, payload)
        self._snapshot_bytes = len(payload)
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
        header = json.dumps({"generation": self._generation}).encode() + b"\n"
        write_private(self.journal_path, header)
        self._journal_fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
        self._journal_bytes = len(header)
        if self._shadow is not None:
            self._shadow = self._resources_copy()

    def _resources_copy(self) -> dict[str, Any]:
        """The resource maps as plain JSON data, apart from memory (the journal check's start)."""
        copied: dict[str, Any] = json.loads(json.dumps({k: self.data[k] for k in RESOURCE_KINDS}))
        return copied

    @contextmanager
    def mutation(self) -> Iterator[dict[str, Any]]:
        """Hold the lock for a change and persist it before the block returns; the caller
        answers only once its change is on disk.

        Handlers validate before they mutate, so an exception means nothing was changed (what
        the block touched is journaled anyway: the journal always follows memory).

        The change is appended to the journal, not written as a whole document: one line per
        resource entry the block touched (`_Tracked`: every entry of a resource map it read by
        key, set, popped or deleted), so a write costs what it changed. Rewriting the whole
        document on each change cost about 15 ms at 2 MB, and a call's time grew with
        everything the emulator held, which ARM's does not. The journal becomes the next
        snapshot once it is as large as the last one (`_compact`), so rewrites stay in
        proportion to the changes. A handler that changes an entry it reached by iterating a
        map calls `touch(kind, key)`.
        """
        with self.lock:
            outer = self._depth == 0
            if outer:
                before = {kind: self.data[kind] for kind in RESOURCE_KINDS}
                for kind in RESOURCE_KINDS:
                    before[kind].touched = set()
            self._depth += 1
            try:
                yield self.data
            finally:
                self._depth -= 1
                if outer:
                    self._journal(before)

    @property
    def changing(self) -> bool:
        """Under the lock: whether this thread is inside `mutation` (the lock is re-entrant, so
        no other thread's mutation can be open meanwhile)."""
        return self._depth > 0

    def touch(self, kind: str, key: str) -> None:
        """Inside `mutation`: the entry `key` of `kind` changed (reached by iteration)."""
        touched = self.data[kind].touched
        if touched is None:
            raise RuntimeError("touch() runs inside mutation()")
        touched.add(key)

    def _journal(self, before: dict[str, _Tracked]) -> None:
        entries: list[dict[str, Any]] = []
        for kind in RESOURCE_KINDS:
            held, current = before[kind], self.data[kind]
            touched, held.touched = held.touched or set(), None
            if current is not held:  # the whole map replaced (reset)
                current = self.data[kind] = _Tracked(current)
                entries.append({"kind": kind, "all": current})
                continue
            for key in sorted(touched):
                if key in current:
                    entries.append({"kind": kind, "key": key, "value": dict.get(current, key)})
                else:
                    entries.append({"kind": kind, "key": key})
        payload = b"".join(json.dumps(entry).encode() + b"\n" for entry in entries)
        if payload:
            os.write(self._journal_fd, payload)
            self._journal_bytes += len(payload)
        if self._shadow is not None:
            for line in payload.splitlines():
                _apply(self._shadow, json.loads(line))
            for kind in RESOURCE_KINDS:
                if self._shadow[kind] != self.data[kind]:
                    # This request fails; the next ones are checked against memory again.
                    self._shadow = self._resources_copy()
                    raise RuntimeError(
                        f"emulator state: a change to {kind} is not in the journal (an entry "
                        "reached by iteration and changed without touch())"
                    )
        if self._journal_bytes > max(JOURNAL_MIN_BYTES, self._snapshot_bytes):
            self._compact()

    def reset(self) -> None:
        """Drop every resource; keep the tenant, the portal principal and the signing key."""
        with self.mutation() as data:
            data.update(_empty_resources())
        self.deleted_groups.clear()

    @property
    def tenant_id(self) -> str:
        return str(self.data["tenant_id"])

    @property
    def entra_key(self) -> keys.KeyRecord:
        record: keys.KeyRecord = self.data["entra_key"]
        return record

    def snapshot(self) -> dict[str, Any]:
        """Every resource as JSON-safe data, without private keys, secrets or cluster tokens."""
        with self.lock:
            clusters = {
                cid: {k: v for k, v in cluster.items() if k not in {"key", "token"}}
                for cid, cluster in self.data["clusters"].items()
            }
            return json.loads(
                json.dumps(
                    {
                        "tenant_id": self.tenant_id,
                        "portal_client_id": self.data["portal"]["client_id"],
                        "portal_object_id": self.data["portal"]["object_id"],
                        "principals": self.data["principals"],
                        "identities": self.data["identities"],
                        "fics": self.data["fics"],
                        "role_assignments": self.data["role_assignments"],
                        "clusters": clusters,
                        "service_accounts": self.data["service_accounts"],
                        "inventory": self.data["inventory"],
                        "schedule_requests": self.data["schedule_requests"],
                    }
                )
            )


def state_dir_ready(path: Path) -> Path:
    """Create the state directory (0700) if needed and return it resolved."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path.resolve()
