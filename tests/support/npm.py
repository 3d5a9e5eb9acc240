"""npm packages the tests run (axe-core, Azurite), installed on first use into a folder of
their own (`npm install --prefix`, a pinned version).

Several xdist workers can need one at the same moment, on a fresh checkout: two installs into
one folder fail (npm's ENOTEMPTY, one renaming what the other is writing). So the install runs
under an exclusive lock on a file beside the folder (`django.core.files.locks`), and a worker
that waited for it finds the package there and installs nothing.

An install that fails is not tried again in the same test run: npm spends minutes retrying a
registry it cannot reach, and every test needing the package waited that long in turn (25
minutes more for the suite on a machine with no route to the npm registry). The failure is
written beside the folder with the run's id (xdist's, shared by its workers), and later
tests of that run skip (or fail, under REQUIRE_SERVICES=1) at once with the same error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from django.core.files import locks

from tests.support.services import service_missing


def _run_id() -> str:
    """One id per test run: xdist's (all its workers share it), else this process's."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid-{os.getpid()}"


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
    failed = prefix.with_name(prefix.name + ".failed")
    error = ""
    with open(prefix.with_name(prefix.name + ".lock"), "ab") as handle:
        locks.lock(handle, locks.LOCK_EX)
        try:
            if wanted.exists():  # another worker installed it while this one waited
                return wanted
            run_id, _, earlier = (failed.read_text() if failed.exists() else "").partition("\n")
            if run_id == _run_id():
                error = f"(this test run's earlier attempt)\n{earlier}"
            else:
                prefix.mkdir(parents=True, exist_ok=True)
                command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund"]
                result = subprocess.run(
                    [*command, *options, spec],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if result.returncode != 0 or not wanted.exists():
                    error = result.stderr[-2000:]
                    failed.write_text(f"{_run_id()}\n{error}")
                else:
                    failed.unlink(missing_ok=True)
        finally:
            locks.unlock(handle)
    if error:
        service_missing(f"npm install {spec} failed:\n{error}")
    return wanted
