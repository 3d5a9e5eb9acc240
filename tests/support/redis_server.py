"""A private `redis-server` process for tests that stop and restart Redis.

The machine's shared Redis (REDIS_URL) must never be restarted by a test: other test runs use
it. A test that needs a Redis outage starts its own server on a free port, with no persistence
(`--save "" --appendonly no`), so a restart loses everything that was in it, as a crash of an
unpersisted production Redis would.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.services import ManagedProcess, free_port, service_missing, wait_until


class RedisServer:
    """One redis-server on 127.0.0.1:<port>; `restart()` keeps the port and loses the data."""

    def __init__(self, executable: str, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process = ManagedProcess(
            name="redis",
            args=[
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
            ],
            env={},
            log_path=folder / "redis.log",
        )

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url(), socket_connect_timeout=0.5).ping())
        except redis.exceptions.RedisError:
            return False

    def start(self) -> None:
        self.process.start()
        if not wait_until(self.ping, timeout=15, interval=0.05):
            raise RuntimeError(f"redis-server did not start:\n{self.process.log_tail()}")

    def kill(self) -> None:
        """kill -9: every queued message, unacked delivery and lock in it is gone."""
        self.process.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, stopped at the end."""
    executable = shutil.which("redis-server")
    if executable is None:
        service_missing("redis-server is not installed (needed to restart Redis in a test)")
    assert executable is not None
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(executable, folder)
    server.start()
    yield server
    server.stop()
