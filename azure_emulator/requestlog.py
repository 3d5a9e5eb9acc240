"""The request log: ``<state-dir>/requests.jsonl``, one JSON object per request served.

Only request metadata is written (method, path, query string, status, timing, ids, the error
code and the operation kind). Bodies and headers are never logged, so Authorization headers,
client secrets, client assertions and tokens cannot leak into it; the one query string that
could carry a secret-like value is not one any emulated API accepts.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


class RequestLog:
    """Append-only JSON-lines log with line numbers, safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._count = 0
        # Bumped by `clear`: a request received before a reset is not logged after it (a call
        # a fault held for a minute would otherwise land in the next test's fresh log).
        self.generation = 0
        if path.exists():
            with path.open("rb") as handle:
                self._count = sum(1 for _ in handle)

    def append(self, entry: dict[str, Any], *, generation: int | None = None) -> None:
        """Add one entry; dropped if `generation` (the log's when the request arrived) is from
        before the last `clear`."""
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
            self._count += 1

    def read(self, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Entries from line ``since`` on (0-based), and the line number to ask for next."""
        with self._lock:
            if not self.path.exists():
                return [], 0
            with self.path.open(encoding="utf-8") as handle:
                lines = handle.readlines()
        entries = [json.loads(line) for line in lines[since:] if line.strip()]
        return entries, len(lines)

    def clear(self) -> None:
        """Truncate the log (tests start from an empty log after a reset)."""
        with self._lock:
            self.path.write_text("")
            self._count = 0
            self.generation += 1

    def __len__(self) -> int:
        return self._count
