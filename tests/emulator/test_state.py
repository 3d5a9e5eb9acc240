"""The emulator's store: every answered change is on disk, and concurrent changes share writes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from azure_emulator.state import Store

WRITERS = 12


class SlowStore(Store):
    """A store whose write takes 30 ms more (outside the store's lock, as writing the file is),
    as a large document's does; it counts its writes."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.writes = 0

    def save(self) -> None:
        with self.lock:
            self.writes += 1
        time.sleep(0.03)
        super().save()


def _on_disk(store: Store) -> dict[str, object]:
    data: dict[str, object] = json.loads(store.path.read_text())["principals"]
    return data


def _write_concurrently(store: Store) -> dict[str, bool]:
    """WRITERS threads each add a principal; each checks the file the moment its change returns."""
    seen_on_disk: dict[str, bool] = {}
    start = threading.Barrier(WRITERS)

    def write(n: int) -> None:
        start.wait(timeout=10)
        with store.mutation() as data:
            data["principals"][f"p{n}"] = {"type": "User"}
        seen_on_disk[f"p{n}"] = f"p{n}" in _on_disk(store)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return seen_on_disk


def test_a_change_is_on_disk_before_the_mutation_returns(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.open()

    seen_on_disk = _write_concurrently(store)

    assert seen_on_disk == {f"p{n}": True for n in range(WRITERS)}
    assert set(_on_disk(store)) == {f"p{n}" for n in range(WRITERS)}
    reopened = Store(tmp_path)
    reopened.open()
    assert set(reopened.data["principals"]) == {f"p{n}" for n in range(WRITERS)}


def test_changes_made_while_a_write_is_under_way_share_the_next_write(tmp_path: Path) -> None:
    store = SlowStore(tmp_path)
    store.open()
    store.writes = 0

    seen_on_disk = _write_concurrently(store)

    assert all(seen_on_disk.values())
    # One write per change would be WRITERS; the ones queued behind a write share the next.
    assert 1 <= store.writes < WRITERS / 2


def test_a_change_nested_in_a_held_lock_is_written_before_it_returns(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.open()

    with store.lock:
        with store.mutation() as data:
            data["principals"]["nested"] = {"type": "Group"}
        assert "nested" in _on_disk(store)
