"""The ARM clients' shared HTTP session reads the environment's proxy and CA-bundle settings once
per origin: the same answers requests itself gives (azure-core documents HTTP_PROXY,
HTTPS_PROXY and NO_PROXY), and a real ARM call still goes through the configured proxy."""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from identities.models import IdentityRequest
from provisioning.azure import _arm_session, _gateway_for
from provisioning.reconcile import reconcile_request
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


URLS = (
    "https://management.azure.com/subscriptions/x?api-version=2023-01-31",
    "https://arm.internal.example:8443/subscriptions/x",
    "http://management.azure.com/",
    "https://login.microsoftonline.com/tenant/oauth2/v2.0/token",
)


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"HTTPS_PROXY": "http://proxy.example:3128"},
        {
            "HTTPS_PROXY": "http://proxy.example:3128",
            "HTTP_PROXY": "http://plain.example:80",
            "NO_PROXY": "internal.example,login.microsoftonline.com",
        },
        {"https_proxy": "http://lower.example:3128", "no_proxy": "*"},
        {"REQUESTS_CA_BUNDLE": "/etc/ssl/corporate.pem"},
        {"CURL_CA_BUNDLE": "/etc/ssl/curl.pem", "ALL_PROXY": "socks5://all.example:1080"},
    ],
    ids=["none", "https-proxy", "no-proxy-list", "lower-case-everything-bypassed", "ca", "curl"],
)
@pytest.mark.parametrize("verify", [True, None, False, "/etc/ssl/explicit.pem"])
def test_the_session_answers_as_requests_does(
    clean_environment: pytest.MonkeyPatch, environment: dict[str, str], verify: Any
) -> None:
    for name, value in environment.items():
        clean_environment.setenv(name, value)
    ours, theirs = _arm_session(), requests.Session()
    for url in URLS:
        for call_proxies in ({}, {"no_proxy": "management.azure.com"}):
            for _ in range(2):  # the second answer is the remembered one
                assert ours.merge_environment_settings(
                    url, dict(call_proxies), None, verify, None
                ) == theirs.merge_environment_settings(url, dict(call_proxies), None, verify, None)


def test_the_environment_is_read_once_per_origin(clean_environment: pytest.MonkeyPatch) -> None:
    """What the docstring promises: a variable changed in a running process is seen by a new
    session (a restart), not by one that already called that origin."""
    session = _arm_session()
    url = "https://management.azure.com/subscriptions/x"
    assert session.merge_environment_settings(url, {}, None, True, None)["proxies"] == {}

    clean_environment.setenv("HTTPS_PROXY", "http://proxy.example:3128")

    assert session.merge_environment_settings(url, {}, None, True, None)["proxies"] == {}
    other_origin = "https://arm.internal.example/subscriptions/x"
    assert session.merge_environment_settings(other_origin, {}, None, True, None)["proxies"] == {
        "https": "http://proxy.example:3128"
    }
    assert _arm_session().merge_environment_settings(url, {}, None, True, None)["proxies"] == {
        "https": "http://proxy.example:3128"
    }


class _ConnectProxy(socketserver.ThreadingTCPServer):
    """A forwarding HTTPS proxy (HTTP CONNECT, then bytes both ways) recording its targets."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.targets: list[str] = []


class _Tunnel(socketserver.StreamRequestHandler):
    server: _ConnectProxy

    def handle(self) -> None:
        method, target, _ = self.rfile.readline().decode("latin-1").split(" ", 2)
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        if method != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        self.server.targets.append(target)
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            ends = [self.connection, upstream]
            while True:
                readable, _, _ = select.select(ends, [], [], 30)
                if not readable:
                    return
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)


@pytest.fixture
def proxy() -> Iterator[_ConnectProxy]:
    server = _ConnectProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_arm_calls_go_through_the_proxy_the_environment_names(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    proxy: _ConnectProxy,
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    _gateway_for.cache_clear()  # a gateway (and session) made now, under this environment
    try:
        identity_request = approved_request()
        reconcile_request(identity_request.pk)
    finally:
        _gateway_for.cache_clear()  # no later test gets this proxied gateway

    identity_request = IdentityRequest.objects.get(pk=identity_request.pk)
    assert identity_request.status == "ready", identity_request.last_error
    emulator = urlsplit(sandbox.emulator.url)
    assert f"{emulator.hostname}:{emulator.port}" in proxy.targets
