"""The worker's liveness probe, for a supervisor (Kubernetes `livenessProbe`, Docker healthcheck):

    python -m portal.worker_probe [--max-age SECONDS]   # exit 0: alive; 1: not (says why)

Alive means the worker's pool ran a job within WORKER_LIVENESS_MAX_AGE_SECONDS (default 60): the
worker touches WORKER_LIVENESS_FILE each time (portal/worker_health.py). The probe runs every
few seconds, so it reads only that file and the environment (the names the settings read): no
Django settings, no database, no broker.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

DEFAULT_MAX_AGE_SECONDS = 60


def liveness_file() -> Path:
    """WORKER_LIVENESS_FILE, or `worker-liveness` in the var folder (as portal.settings)."""
    configured = os.environ.get("WORKER_LIVENESS_FILE", "")
    if configured:
        return Path(configured)
    base = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("PORTAL_VAR_DIR", base / "var")) / "worker-liveness"


def main(argv: list[str]) -> int:
    """Exit status 0 when the liveness file is fresh, 1 (with the reason) otherwise."""
    path = liveness_file()
    max_age = float(os.environ.get("WORKER_LIVENESS_MAX_AGE_SECONDS", DEFAULT_MAX_AGE_SECONDS))
    if len(argv) == 2 and argv[0] == "--max-age":
        max_age = float(argv[1])
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"worker not alive: {path} does not exist", file=sys.stderr)  # noqa: T201
        return 1
    if age > max_age:
        print(  # noqa: T201
            f"worker not alive: its pool ran no job for {age:.0f}s (limit {max_age:.0f}s)",
            file=sys.stderr,
        )
        return 1
    print(f"worker alive: its pool ran a job {age:.0f}s ago")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
