"""npm packages the tests run (axe-core, Azurite), installed on first use into a folder of
their own (`npm install --prefix`, a pinned version).

Several xdist workers can need one at the same moment, on a fresh checkout: two installs into
one folder fail (npm's ENOTEMPTY, one renaming what the other is writing). So the install runs
under an exclusive lock on a file beside the folder (`django.core.files.locks`), and a worker
that waited for it finds the package there and installs nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from django.core.files import locks

from tests.support.services import service_missing


def npm_install(spec: str, prefix: Path, wanted: Path, *, options: tuple[str, ...] = ()) -> Path:
    """`wanted` (a file the package brings) under `prefix`, installing `spec` there first when
    it is missing. No npm, or an install that fails, skips the test (fails it under
    REQUIRE_SERVICES=1)."""
    if wanted.exists():
        return wanted
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        service_missing(f"node and npm are needed to install {spec}")
    assert npm is not None
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.with_name(prefix.name + ".lock"), "ab") as handle:
        locks.lock(handle, locks.LOCK_EX)
        try:
            if wanted.exists():  # another worker installed it while this one waited
                return wanted
            prefix.mkdir(parents=True, exist_ok=True)
            command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund"]
            result = subprocess.run(
                [*command, *options, spec],
                capture_output=True,
                text=True,
                timeout=600,
            )
        finally:
            locks.unlock(handle)
    if result.returncode != 0 or not wanted.exists():
        service_missing(f"npm install {spec} failed:\n{result.stderr[-2000:]}")
    return wanted
