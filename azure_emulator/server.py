"""The HTTPS server: a threaded stdlib HTTP/1.1 server with TLS done in the worker thread.

``serve()`` prepares the state directory (CA, certificates, state, portal credentials), binds
(port 0 picks a free port), writes ``<state-dir>/url`` atomically, prints
``EMULATOR READY <url>`` on stdout and serves until SIGTERM/SIGINT, then removes the url file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from azure_emulator import knobs, tls
from azure_emulator.app import App
from azure_emulator.context import Context
from azure_emulator.protocol import Request
from azure_emulator.requestlog import RequestLog
from azure_emulator.state import Store, state_dir_ready

_WILDCARDS = {"", "0.0.0.0", "::"}  # noqa: S104 - names the wildcard addresses; binds nothing


class EmulatorServer(ThreadingHTTPServer):
    """Threaded server whose handlers share one ``App`` and one TLS context."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], app: App, context: ssl.SSLContext) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app, self.ssl_context = app, context
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-handshake or mid-request are normal; anything else is not.
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """Reads one request, hands it to the App, writes the answer (or drops the connection)."""

    protocol_version = "HTTP/1.1"
    server: EmulatorServer
    # An idle keep-alive connection is closed after this many seconds.
    timeout = 120

    def setup(self) -> None:
        # Headers and body leave in separate TLS records; without NODELAY, Nagle plus the
        # client's delayed ACK adds ~40 ms to every response.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The TLS handshake happens here, in the worker thread, so a slow client cannot stall
        # the accept loop.
        self.request = self.server.ssl_context.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: requests.jsonl is the log."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        parts = urlsplit(self.path)
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        request = Request(
            method=self.command,
            path=unquote(parts.path),
            query=parse_qs(parts.query, keep_blank_values=True),
            raw_query=parts.query,
            headers=dict(self.headers.items()),
            body=body,
            base_url=f"https://{host}",
            client_ip=str(self.client_address[0]),
        )
        response = self.server.app.handle(request)
        if response.drop_connection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.request.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


def _url_host(host: str) -> str:
    if host in _WILDCARDS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def serve(
    *,
    host: str,
    port: int,
    state_dir: Path,
    public_url: str | None = None,
    cert_hosts: list[str] | None = None,
    allow_remote_control: bool = False,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Run the emulator until SIGTERM or SIGINT."""
    start_knobs = knobs.from_env(os.environ if environ is None else environ)
    state_dir = state_dir_ready(state_dir)
    url_file = state_dir / "url"
    url_file.unlink(missing_ok=True)
    extra_hosts = list(cert_hosts or [])
    if host not in _WILDCARDS:
        extra_hosts.append(host)
    if public_url:
        extra_hosts.append(urlsplit(public_url).hostname or "")
    ca_path, cert_path, key_path = tls.ensure_certificates(state_dir, [h for h in extra_hosts if h])
    environment = os.environ if environ is None else environ
    # Tests: check after each change that the journal holds it (Store.mutation).
    store = Store(state_dir, verify_journal=environment.get("EMULATOR_VERIFY_JOURNAL") == "1")
    store.open()
    ctx = Context(
        store=store,
        log=RequestLog(state_dir / "requests.jsonl"),
        start_knobs=start_knobs,
        ca_pem=ca_path.read_bytes(),
        allow_remote_control=allow_remote_control,
    )
    server = EmulatorServer((host, port), App(ctx), tls.server_context(cert_path, key_path))
    ctx.public_url = (public_url or f"https://{_url_host(host)}:{server.server_address[1]}").rstrip(
        "/"
    )
    tmp = url_file.with_name(".url.tmp")
    tmp.write_text(ctx.public_url + "\n")
    os.replace(tmp, url_file)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must run on another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write(f"EMULATOR READY {ctx.public_url}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        url_file.unlink(missing_ok=True)
