"""The tests' npm installs (tests/support/npm.py): a failed install is tried once per test run,
not once per test that needs the package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.npm import npm_install

# Skipped, or failed under REQUIRE_SERVICES=1.
MISSING = (pytest.skip.Exception, pytest.fail.Exception)


def test_a_failed_install_is_not_tried_again_in_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed")
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "run-one")
    prefix = tmp_path / "pkg"
    wanted = prefix / "node_modules" / "absent" / "index.js"
    # A local path that does not exist: npm fails at once, with no registry involved.
    spec = f"file:{tmp_path / 'no-such-package'}"

    with pytest.raises(MISSING) as first:
        npm_install(spec, prefix, wanted)
    failed = tmp_path / "pkg.failed"
    recorded = failed.read_text()
    assert recorded.startswith("run-one\n") and "npm install" in str(first.value)

    # The same run: refused at once with the recorded error, npm not run again (the record
    # is exactly as the first attempt wrote it).
    with pytest.raises(MISSING) as second:
        npm_install(spec, prefix, wanted)
    assert "this test run's earlier attempt" in str(second.value)
    assert failed.read_text() == recorded

    # A later run tries again.
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "run-two")
    with pytest.raises(MISSING) as third:
        npm_install(spec, prefix, wanted)
    assert "earlier attempt" not in str(third.value)
    assert failed.read_text().startswith("run-two\n")
