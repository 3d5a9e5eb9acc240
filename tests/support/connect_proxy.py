"""An HTTP egress proxy the test starts on 127.0.0.1: it answers CONNECT (RFC 9110, 9.3.6) by
opening a TCP tunnel to the named host:port, and keeps each CONNECT target and its
Proxy-Authorization header. `refuse` makes it answer 403 instead, as a proxy's policy would."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class ConnectProxy:
    server: socketserver.ThreadingTCPServer
    targets: list[str] = field(default_factory=list)  # "host:port" of each CONNECT
    authorizations: list[str] = field(default_factory=list)
    refuse: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def start_connect_proxy() -> ConnectProxy:
    proxy: ConnectProxy

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request_line = self.rfile.readline(8192).decode("latin-1").split()
            headers = {}
            while (line := self.rfile.readline(8192)) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if len(request_line) != 3 or request_line[0] != "CONNECT":
                self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            target = request_line[1]
            proxy.targets.append(target)
            proxy.authorizations.append(headers.get("proxy-authorization", ""))
            if proxy.refuse:
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe(self.connection, upstream)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy = ConnectProxy(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return proxy


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        while True:
            readable, _, _ = select.select([client, upstream], [], [], 10)
            if not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (upstream if source is client else client).sendall(data)
    except OSError:
        return
    finally:
        upstream.close()


@pytest.fixture
def connect_proxy() -> Iterator[ConnectProxy]:
    proxy = start_connect_proxy()
    yield proxy
    proxy.server.shutdown()
    proxy.server.server_close()


@pytest.fixture
def behind_proxy(monkeypatch: pytest.MonkeyPatch, connect_proxy: ConnectProxy) -> ConnectProxy:
    """HTTPS_PROXY names the test's proxy, and no other proxy setting of the machine applies."""
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    return connect_proxy
