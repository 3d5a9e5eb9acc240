"""Azurite, the Azure Storage emulator (npm), for tests of the audit anchor's blob sink.

Installed on first use into a cache folder outside the checkout (`npm install --prefix`, the
pinned version below) and started by the test on a free loopback port with its data in memory.
No node/npm, or an install that fails, skips the test, or fails it under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.npm import npm_install
from tests.support.services import ManagedProcess, free_port, wait_until

AZURITE_VERSION = "3.37.0"
# Azurite's documented development account (public, the same on every machine; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azurite_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "workload-identity-portal" / f"azurite-{AZURITE_VERSION}"


def azurite_blob_executable() -> str:
    """The azurite-blob launcher, installed from npm into the cache folder when missing."""
    prefix = azurite_cache()
    launcher = prefix / "node_modules" / ".bin" / "azurite-blob"
    return str(npm_install(f"azurite@{AZURITE_VERSION}", prefix, launcher))


class Azurite:
    """An azurite-blob process on 127.0.0.1:<port>."""

    def __init__(self, executable: str, folder: Path) -> None:
        self.port = free_port()
        self.process = ManagedProcess(
            name="azurite",
            args=[
                executable,
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--silent",
            ],
            env={"PATH": os.environ.get("PATH", "")},
            log_path=folder / "azurite.log",
        )

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self) -> None:
        self.process.start()
        if not wait_until(self.listening, timeout=60, interval=0.1):
            raise RuntimeError(f"Azurite did not start:\n{self.process.log_tail()}")

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    """Azurite's blob service, started for this test and stopped at its end."""
    executable = azurite_blob_executable()
    folder = tmp_path / "azurite"
    folder.mkdir()
    server = Azurite(executable, folder)
    server.start()
    yield server
    server.stop()
