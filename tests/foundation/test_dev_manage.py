"""`python3 dev.py manage …` runs a management command with the settings of `dev.py run`, where
plain `python manage.py …` (DEBUG off, no SECRET_KEY) refuses to start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.services import REPO_ROOT, run_manage


def dev_manage(*args: str, var_dir: Path) -> subprocess.CompletedProcess[str]:
    # What a fresh shell in a `dev.py run` checkout has: no DEBUG, no SECRET_KEY, no database URL.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CACHE_URL"}
    }
    env["PORTAL_VAR_DIR"] = str(var_dir)
    return subprocess.run(
        [sys.executable, "dev.py", "manage", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_create_api_token_works_through_dev_manage_where_plain_manage_refuses(
    tmp_path: Path,
) -> None:
    plain = run_manage("create_api_token", "alice", PORTAL_VAR_DIR=str(tmp_path))
    assert plain.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in plain.stderr

    for command in (("migrate", "--no-input", "-v", "0"), ("seed_demo",)):
        result = dev_manage(*command, var_dir=tmp_path)
        assert result.returncode == 0, result.stderr
    token = dev_manage(
        "create_api_token", "alice", "--scopes", "read,request", "--expires-in", "1d",
        var_dir=tmp_path,
    )  # fmt: skip
    assert token.returncode == 0, token.stderr
    assert re.fullmatch(r"wip_[0-9A-Za-z]{42}\n", token.stdout)
    # The same database as `dev.py run` (var/, here PORTAL_VAR_DIR), not a throwaway one.
    assert (tmp_path / "portal.sqlite3").exists()


def test_dev_manage_passes_the_command_exit_code_through(tmp_path: Path) -> None:
    result = dev_manage("create_api_token", "nobody-here", var_dir=tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY" not in result.stderr


def test_dev_manage_without_a_command_says_how_to_use_it(tmp_path: Path) -> None:
    result = dev_manage(var_dir=tmp_path)
    assert result.returncode != 0
    assert "usage: python3 dev.py manage <command>" in result.stderr
