"""A TCP proxy a test puts between a portal process and PostgreSQL, to break the connection.

The portal under test connects to the proxy (`DATABASE_URL` with the proxy's port and
`sslmode=disable`, so the SQL is readable on the wire); the proxy forwards bytes both ways.
The test can then

- `cut_on(b'INSERT INTO "identities_requestedrole"')`: the next time a client sends a message
  containing those bytes, the proxy drops that message and closes both sides, exactly as if
  the network or the server went away at that point of the request (the server never sees the
  statement; the client gets "server closed the connection unexpectedly");
- `refuse()`: close every open connection and every new one at once (the database is down);
- `restore()`: forward again.

Only the test's own connections pass through it; the shared PostgreSQL is never touched.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.services import free_port

_CHUNK = 65536


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._pattern: bytes | None = None
        self._refusing = False
        self._closed = False
        self.cuts = 0  # connections cut on a pattern
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    # -- what tests call --------------------------------------------------------------------------
    def cut_on(self, pattern: bytes) -> None:
        """Cut the connection that next sends `pattern` (once; then forward normally)."""
        with self._lock:
            self._pattern = pattern

    def refuse(self) -> None:
        """Drop every open connection and close each new one at once."""
        with self._lock:
            self._refusing = True
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(*pair)

    def restore(self) -> None:
        with self._lock:
            self._refusing = False
            self._pattern = None

    def database_url(self) -> str:
        """DATABASE_URL for a portal process: the test database, through this proxy."""
        from django.db import connection

        db = connection.settings_dict
        auth = db.get("USER") or ""
        if db.get("PASSWORD"):
            auth += f":{db['PASSWORD']}"
        return f"postgres://{auth}@127.0.0.1:{self.port}/{db['NAME']}?sslmode=disable"

    def close(self) -> None:
        self._closed = True
        self.refuse()
        self._listener.close()

    # -- forwarding -------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(
                target=self._pump, args=(client, server), name="tcp-proxy-pump", daemon=True
            ).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        tail = b""  # the end of the previous chunk, so a pattern split across chunks still matches
        try:
            while True:
                readable, _, _ = select.select([client, server], [], [], 1.0)
                if self._closed:
                    return
                for source in readable:
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    if source is client:
                        with self._lock:
                            pattern = self._pattern
                            hit = pattern is not None and pattern in tail + data
                            if hit:
                                self._pattern = None
                                self.cuts += 1
                        if hit:
                            return  # the message is never forwarded; both sides are closed
                        tail = data[-256:]
                        server.sendall(data)
                    else:
                        client.sendall(data)
        except (OSError, ValueError):
            # ValueError: select() on a socket another thread closed (close(), a cut) meanwhile,
            # whose descriptor is -1 by then; the pair is over either way.
            return
        finally:
            _close(client, server)
            with self._lock, contextlib.suppress(ValueError):
                self._pairs.remove((client, server))


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


def postgres_address() -> tuple[str, int]:
    """Host and port of the test database's PostgreSQL server."""
    from django.db import connection

    settings_dict = connection.settings_dict
    return settings_dict.get("HOST") or "127.0.0.1", int(settings_dict.get("PORT") or 5432)


@pytest.fixture
def postgres_proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the test database's PostgreSQL server."""
    proxy = TcpProxy(postgres_address())
    yield proxy
    proxy.close()
