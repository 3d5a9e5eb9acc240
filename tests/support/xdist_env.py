"""Per-worker services when the suite runs under pytest-xdist (`-n auto`).

Loaded with `-p` (pyproject's addopts), so it runs in each xdist worker before Django reads its
settings: each worker gets its own Redis database (REDIS_URL and CACHE_URL, database + worker
number, modulo Redis's 16), so one worker's sign-in lockouts, throttle counters and FIC locks are
never another's. pytest-django gives each worker its own test database (`test_<name>_gw<n>`);
everything else a test starts (emulator, Celery workers, their queues, tmp dirs) is per worker or
per test already.
"""

from __future__ import annotations

import os
import re

REDIS_DATABASES = 16


def _per_worker(url: str, worker: int) -> str:
    match = re.fullmatch(r"(rediss?://[^/]+)(?:/(\d+))?(\?.*)?", url)
    if match is None:
        return url
    base = int(match.group(2) or 0)
    return f"{match.group(1)}/{(base + worker) % REDIS_DATABASES}{match.group(3) or ''}"


_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and _worker[2:].isdigit():
    for _name in ("REDIS_URL", "CACHE_URL"):
        if os.environ.get(_name):
            os.environ[_name] = _per_worker(os.environ[_name], int(_worker[2:]))
