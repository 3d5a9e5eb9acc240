"""The emulator's store: every answered change is on disk (the snapshot and its journal) before
it returns, a change costs what it changed, and a restart replays exactly the answered ones."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from azure_emulator import state
from azure_emulator.state import Store

WRITERS = 12


def _on_disk(state_dir: Path) -> dict[str, Any]:
    """The document a restart would load, read without writing anything: the snapshot, and
    its journal's lines when the journal is the snapshot's (as Store.open replays them)."""
    document: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    lines = (state_dir / "state.journal").read_bytes().split(b"\n")
    if json.loads(lines[0]).get("generation") == document["generation"]:
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                break
            state._apply(document, entry)
    return document


def _opened(state_dir: Path, *, verify: bool = False) -> Store:
    store = Store(state_dir, verify_journal=verify)
    store.open()
    return store


def test_a_change_is_on_disk_before_the_mutation_returns(tmp_path: Path) -> None:
    store = _opened(tmp_path)
    seen_on_disk: dict[str, bool] = {}
    start = threading.Barrier(WRITERS)

    def write(n: int) -> None:
        start.wait(timeout=10)
        with store.mutation() as data:
            data["principals"][f"p{n}"] = {"type": "User"}
        seen_on_disk[f"p{n}"] = f"p{n}" in _on_disk(tmp_path)["principals"]

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert seen_on_disk == {f"p{n}": True for n in range(WRITERS)}
    assert set(_opened(tmp_path).data["principals"]) == {f"p{n}" for n in range(WRITERS)}


def test_a_change_costs_what_it_changed_not_the_whole_document(tmp_path: Path) -> None:
    # Rewriting the whole document on each change made a call's time grow with everything the
    # emulator held (about 15 ms at 2 MB), which ARM's does not.
    store = _opened(tmp_path)
    with store.mutation() as data:
        for n in range(2000):
            data["role_assignments"][f"ra{n}"] = {"scope": f"/subscriptions/s/rg{n}", "n": n}
    snapshot = (tmp_path / "state.json").stat()
    journal = (tmp_path / "state.journal").stat().st_size

    with store.mutation() as data:
        data["role_assignments"]["ra7"]["n"] = "changed"  # reached by key: tracked
        del data["role_assignments"]["ra8"]

    assert (tmp_path / "state.journal").stat().st_size - journal < 200
    assert (tmp_path / "state.json").stat() == snapshot  # not rewritten
    reopened = _opened(tmp_path).data["role_assignments"]
    assert reopened["ra7"]["n"] == "changed"
    assert "ra8" not in reopened
    assert len(reopened) == 1999


def test_the_journal_becomes_a_snapshot_once_it_outgrows_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "JOURNAL_MIN_BYTES", 4096)
    store = _opened(tmp_path)
    for n in range(200):
        with store.mutation() as data:
            data["principals"][f"p{n}"] = {"type": "User", "padding": "x" * 40}

    # Folded at least once: the journal is smaller than all it held, and the snapshot has rows.
    assert (tmp_path / "state.journal").stat().st_size < 200 * 40
    assert json.loads((tmp_path / "state.json").read_text())["principals"]
    assert _on_disk(tmp_path)["principals"] == dict(store.data["principals"])
    assert set(_opened(tmp_path).data["principals"]) == {f"p{n}" for n in range(200)}


def test_a_torn_last_line_is_dropped_and_the_answered_changes_kept(tmp_path: Path) -> None:
    store = _opened(tmp_path)
    with store.mutation() as data:
        data["principals"]["kept"] = {"type": "User"}
    # A kill in the middle of the next write: half a line, never answered.
    with (tmp_path / "state.journal").open("ab") as journal:
        journal.write(b'{"kind": "principals", "key": "torn", "val')

    principals = _opened(tmp_path).data["principals"]

    assert set(principals) == {"kept"}


def test_a_journal_older_than_the_snapshot_is_not_replayed(tmp_path: Path) -> None:
    # A crash after a new snapshot was written but before its empty journal replaced the old
    # one: the old journal's changes are all in the snapshot, and replaying them would go back.
    store = _opened(tmp_path)
    with store.mutation() as data:
        data["principals"]["p"] = {"type": "User"}
    old_journal = (tmp_path / "state.journal").read_bytes()
    with store.mutation() as data:
        data["principals"]["p"] = {"type": "Group"}
    store.lock.acquire()
    store._compact()
    store.lock.release()
    (tmp_path / "state.journal").write_bytes(old_journal)

    assert _opened(tmp_path).data["principals"]["p"] == {"type": "Group"}


def test_a_change_nested_in_a_held_lock_is_on_disk_before_it_returns(tmp_path: Path) -> None:
    store = _opened(tmp_path)

    with store.lock:
        with store.mutation() as data:
            data["principals"]["nested"] = {"type": "Group"}
        assert "nested" in _on_disk(tmp_path)["principals"]


def test_an_entry_changed_through_iteration_must_be_touched(tmp_path: Path) -> None:
    # The tests' emulator runs with the check on (EMULATOR_VERIFY_JOURNAL): a handler that
    # changes an entry it found by iterating a map, without touch(), fails its request there
    # rather than losing the change on the next restart.
    store = _opened(tmp_path, verify=True)
    with store.mutation() as data:
        data["role_assignments"]["a"] = {"expires_at": 1}
        data["role_assignments"]["b"] = {"expires_at": 1}

    with pytest.raises(RuntimeError, match="role_assignments"), store.mutation() as data:
        for record in data["role_assignments"].values():
            record["expires_at"] = 2

    with store.mutation() as data:
        for key, record in data["role_assignments"].items():
            record["expires_at"] = 3
            store.touch("role_assignments", key)
    assert {k: v["expires_at"] for k, v in _on_disk(tmp_path)["role_assignments"].items()} == {
        "a": 3,
        "b": 3,
    }
