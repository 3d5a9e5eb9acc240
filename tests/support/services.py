"""Reaching the real services the tests need, and the skip-or-fail rule for when they are absent.

Without REQUIRE_SERVICES a test whose service is missing is skipped with the reason; with
REQUIRE_SERVICES=1 (CI) it fails, so a broken CI machine can never pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def services_required() -> bool:
    return os.environ.get("REQUIRE_SERVICES", "") in {"1", "true", "yes"}


def service_missing(reason: str) -> None:
    """Skip the test, or fail it under REQUIRE_SERVICES=1."""
    if services_required():
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class ManagedProcess:
    """A child process the tests started; its output goes to a log file kept for diagnosis."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> ManagedProcess:
        from tests.support.log_capture import register_child_log

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        register_child_log(self.log_path, self.name)  # scanned for secrets at the session's end
        log = self.log_path.open("ab")
        # A new session so that stop() can signal the whole group (celery's pool children too).
        self.popen = subprocess.Popen(
            self.args,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (kill -9 by default, as a crash would)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        self.popen.wait(timeout=15)

    def stop(self, timeout: float = 10) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


def stop_all(processes: list[ManagedProcess], timeout: float = 10) -> None:
    """Stop several processes together (SIGTERM to every group first, then wait for each), so
    their shutdowns overlap instead of adding up."""
    running = [process for process in processes if process.alive()]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        process.stop(timeout=max(0.1, deadline - time.monotonic()))


def python_executable() -> str:
    return sys.executable


def celery_executable() -> str:
    candidate = Path(sys.executable).with_name("celery")
    return str(candidate) if candidate.exists() else (shutil.which("celery") or "celery")


def redis_url_or_missing() -> str:
    """The Redis the suite uses (REDIS_URL), reachable, or skip/fail."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        service_missing("Redis is not configured (set REDIS_URL, e.g. redis://127.0.0.1:6379/15)")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        service_missing(f"Redis at {url} is unreachable: {exc}")
    return url


def postgres_or_missing() -> None:
    """The test database is PostgreSQL, or skip/fail."""
    from django.db import connection

    if connection.vendor != "postgresql":
        service_missing(
            "the test database is not PostgreSQL (set DATABASE_URL=postgres://... to run this)"
        )


def database_url_for_children() -> str:
    """A DATABASE_URL that points child processes at the test database pytest-django created."""
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a portal process started by a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.setdefault("DEBUG", "1")
    env["DATABASE_URL"] = database_url_for_children()
    env.update(overrides)
    return env


def iter_lines(path: Path) -> Iterator[str]:
    if path.exists():
        yield from path.read_text(errors="replace").splitlines()


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`manage.py *args` in a fresh process: this environment minus DEBUG and SECRET_KEY (so
    the production defaults apply unless `env` sets them), plus `env`."""
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )
