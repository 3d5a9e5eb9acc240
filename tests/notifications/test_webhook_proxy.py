"""Behind an egress proxy (HTTPS_PROXY, NO_PROXY): the SSRF guard still judges the name, asks the
proxy's CONNECT tunnel for the vetted address (never the name, which the proxy could resolve to
another), and speaks verified TLS with the URL's name inside the tunnel."""

from __future__ import annotations

from typing import Any

import pytest

from identities import outbound
from notifications.webhooks import post
from tests.notifications.test_webhook_tls import HEADERS
from tests.support.connect_proxy import ConnectProxy
from tests.support.tls_receiver import TlsReceiverFactory

pytestmark = pytest.mark.django_db


def test_a_delivery_goes_through_the_proxy_to_the_vetted_address_with_verified_tls(
    production_guard: None,
    tls_receiver_for: TlsReceiverFactory,
    behind_proxy: ConnectProxy,
) -> None:
    receiver = tls_receiver_for("localhost")

    result = post(receiver.url("localhost"), body="{}", headers=HEADERS)

    assert (result.status_code, result.error) == (200, "")
    # The tunnel was asked for the address the guard vetted, not for the name.
    assert behind_proxy.targets == [f"127.0.0.1:{receiver.port}"]
    assert receiver.server_names == ["localhost"], "SNI carries the URL's name"
    (received,) = receiver.requests
    assert received.headers["host"] == f"localhost:{receiver.port}"


def test_the_guard_refuses_before_the_proxy_is_asked(
    production_guard: None,
    settings: Any,
    tls_receiver_for: TlsReceiverFactory,
    behind_proxy: ConnectProxy,
) -> None:
    receiver = tls_receiver_for("localhost")
    settings.WEBHOOK_ALLOWED_HOSTS = []  # localhost is loopback: refused again

    result = post(receiver.url("localhost"), body="{}", headers=HEADERS)

    assert result.status_code is None
    assert "loopback" in result.error
    assert behind_proxy.targets == [], "a refused destination never reaches the proxy"
    assert receiver.requests == []


def test_a_tunnel_the_proxy_refuses_is_a_failed_delivery(
    production_guard: None,
    tls_receiver_for: TlsReceiverFactory,
    behind_proxy: ConnectProxy,
) -> None:
    receiver = tls_receiver_for("localhost")
    behind_proxy.refuse = True

    result = post(receiver.url("localhost"), body="{}", headers=HEADERS)

    assert result.status_code is None
    assert "HTTP 403" in result.error
    assert receiver.requests == []


def test_no_proxy_and_proxy_credentials(
    monkeypatch: pytest.MonkeyPatch, behind_proxy: ConnectProxy
) -> None:
    assert outbound.proxy_for("https://hooks.example.com/x") == behind_proxy.url
    assert outbound.proxy_for("http://127.0.0.1:8000/x") == "", "plain http goes direct"
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp.example")
    assert outbound.proxy_for("https://internal.example/x") == ""
    assert outbound.proxy_for("https://hooks.corp.example/x") == ""
    assert outbound.proxy_for("https://hooks.example.com/x") == behind_proxy.url


def test_the_proxy_is_sent_its_basic_credentials(
    production_guard: None,
    monkeypatch: pytest.MonkeyPatch,
    tls_receiver_for: TlsReceiverFactory,
    behind_proxy: ConnectProxy,
) -> None:
    receiver = tls_receiver_for("localhost")
    monkeypatch.setenv("HTTPS_PROXY", behind_proxy.url.replace("://", "://svc:p%40ss@"))

    assert post(receiver.url("localhost"), body="{}", headers=HEADERS).status_code == 200
    # base64("svc:p@ss")
    assert behind_proxy.authorizations == ["Basic c3ZjOnBAc3M="]
