"""Webhook delivery: the payload signed per the Standard Webhooks specification, posted through
an SSRF guard.

Signing (https://www.standardwebhooks.com/, spec/standard-webhooks.md): headers `webhook-id`
(the same on every retry of one message, so receivers can de-duplicate), `webhook-timestamp`
(Unix seconds) and `webhook-signature` (space-separated `v1,<base64 HMAC-SHA256>` of
`{id}.{timestamp}.{body}`, one per secret: during a rotation both the new and the previous
secret sign). The signatures come from the `standardwebhooks` library's own `Webhook.sign`.

The guard: https only (http with DEBUG or WEBHOOK_ALLOW_HTTP); the host is resolved with
getaddrinfo and every address must be public (no private, loopback, link-local, unique-local,
multicast, reserved or unspecified address, IPv4-mapped ones included) unless the host is in
WEBHOOK_ALLOWED_HOSTS or the address in WEBHOOK_ALLOWED_CIDRS; the connection goes to the vetted
address itself (Host header and TLS SNI carry the name, the certificate is checked against it,
trusted by the system's store or WEBHOOK_CA_BUNDLE),
and the connected socket's peer address is checked again. Redirects are not followed (a 3xx is
a failed delivery); the response is read up to WEBHOOK_MAX_RESPONSE_BYTES within the time limit.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from identities.models import Notification, WebhookEndpoint, WebhookFormat
from notifications import chat

USER_AGENT = "workload-identity-portal-webhooks"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefusedError(Exception):
    """The guard refused the destination (the message says which rule)."""


@dataclass(frozen=True)
class WebhookResult:
    status_code: int | None
    duration_ms: int
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


def _forbidden_reason(address: IPAddress) -> str:
    """Why an address is no place to send to ("" when it is public)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _forbidden_reason(address.ipv4_mapped)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        # is_private covers 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 (unique-local)…
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in checks if hit), "")


def _allow_listed(host: str, address: IPAddress) -> bool:
    if host.lower() in settings.WEBHOOK_ALLOWED_HOSTS:
        return True
    return any(
        address in ipaddress.ip_network(cidr, strict=False)
        for cidr in settings.WEBHOOK_ALLOWED_CIDRS
    )


def vet_address(host: str, address: str) -> IPAddress:
    """Refuse `address` (one that `host` resolved to) unless it is public or allow-listed."""
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    reason = _forbidden_reason(parsed)
    if reason and not _allow_listed(host, parsed):
        raise WebhookRefusedError(f"{host} resolves to {parsed}, a {reason} address: refused.")
    return parsed


def resolve(url: str) -> tuple[str, int, IPAddress]:
    """The URL's host, port and the address to connect to; every address the name resolves to
    must pass (one bad answer among good ones is refused: DNS could hand out either)."""
    parts = urlsplit(url)
    allowed = {"https"} | ({"http"} if settings.DEBUG or settings.WEBHOOK_ALLOW_HTTP else set())
    if parts.scheme not in allowed:
        raise WebhookRefusedError(f"{parts.scheme}:// is not allowed; use https://.")
    host = parts.hostname or ""
    if not host:
        raise WebhookRefusedError("The URL names no host.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise WebhookRefusedError(f"{host} does not resolve: {exc}.") from exc
    addresses = [vet_address(host, str(info[4][0])) for info in infos]
    return host, port, addresses[0]


def payload_of(notification: Notification) -> dict[str, Any]:
    """The event as JSON: Standard Webhooks' suggested shape (type, timestamp, data)."""
    base = settings.PORTAL_BASE_URL.rstrip("/")
    data: dict[str, Any] = {"event": notification.event, **notification.data}
    if notification.identity_request_id is not None:
        request = notification.identity_request
        assert request is not None  # noqa: S101 - the id is set
        data["identity_request"] = {
            "id": request.pk,
            "status": request.status,
            "team": request.team.name,
            "app_name": request.app_name,
            "url": base + reverse("request_detail", args=[request.pk]),
            "api_url": base + reverse("api:identity-request-detail", args=[request.pk]),
        }
    if notification.identity_id is not None:
        identity = notification.identity
        assert identity is not None  # noqa: S101 - the id is set
        data["identity"] = {
            "id": identity.pk,
            "name": identity.name,
            "team": identity.team.name,
            "url": base + reverse("identity_detail", args=[identity.pk]),
        }
    return {
        "type": f"identity_portal.{notification.event}",
        "timestamp": notification.created_at.isoformat(),
        "data": data,
    }


def signed_headers(
    endpoint: WebhookEndpoint, *, message_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    signatures = [
        Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body)
        for secret in endpoint.signing_secrets()
    ]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def _connect(host: str, port: int, address: IPAddress, *, tls: bool, timeout: float) -> Any:
    """A socket to the vetted address (never a fresh lookup of the name), its peer checked."""
    sock = socket.create_connection((str(address), port), timeout=timeout)
    try:
        vet_address(host, str(sock.getpeername()[0]))
        if tls:
            # The system's trust store, plus WEBHOOK_CA_BUNDLE (an on-premises CA) when set;
            # create_default_context verifies the chain and the host name (CERT_REQUIRED,
            # check_hostname), and server_hostname is also the SNI the receiver sees.
            context = ssl.create_default_context()
            if settings.WEBHOOK_CA_BUNDLE:
                context.load_verify_locations(cafile=settings.WEBHOOK_CA_BUNDLE)
            sock = context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    return sock


def post(url: str, *, body: str, headers: dict[str, str]) -> WebhookResult:
    """POST once through the guard; the outcome, never an exception."""
    started = time.monotonic()
    deadline = started + settings.WEBHOOK_TIMEOUT_SECONDS

    def result(status: int | None, error: str) -> WebhookResult:
        return WebhookResult(status, int((time.monotonic() - started) * 1000), error[:1000])

    try:
        host, port, address = resolve(url)
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        connection = http.client.HTTPConnection(
            host, port, timeout=settings.WEBHOOK_TIMEOUT_SECONDS
        )
        connection.sock = _connect(
            host, port, address, tls=tls, timeout=settings.WEBHOOK_TIMEOUT_SECONDS
        )
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        connection.request("POST", path, body=body.encode(), headers=headers)
        response = connection.getresponse()
        received = b""
        while len(received) <= settings.WEBHOOK_MAX_RESPONSE_BYTES:
            if time.monotonic() > deadline:
                connection.close()
                return result(response.status, "The receiver took too long to answer.")
            chunk = response.read(8192)
            if not chunk:
                break
            received += chunk
        connection.close()
    except WebhookRefusedError as exc:
        return result(None, f"Refused: {exc}")
    except (OSError, http.client.HTTPException) as exc:
        return result(None, f"{type(exc).__name__}: {exc}")
    if 300 <= response.status < 400:
        where = response.getheader("location", "")
        return result(response.status, f"Redirect to {where!r} not followed.")
    if not 200 <= response.status < 300:
        return result(response.status, f"The receiver answered {response.status}.")
    return result(response.status, "")


CHAT_MESSAGES: dict[str, Callable[[Notification], dict[str, Any]]] = {
    WebhookFormat.TEAMS: chat.teams_message,
    WebhookFormat.SLACK: chat.slack_message,
}


def deliver(notification: Notification) -> WebhookResult:
    """Post one webhook row to its endpoint: a signed event (standard), or a chat message
    (Teams, Slack: their incoming webhook URL is the secret, nothing is signed)."""
    endpoint = notification.endpoint
    assert endpoint is not None  # noqa: S101 - a webhook row names its endpoint
    if endpoint.format in CHAT_MESSAGES:
        body = json.dumps(CHAT_MESSAGES[endpoint.format](notification), separators=(",", ":"))
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        return post(endpoint.url, body=body, headers=headers)
    body = json.dumps(payload_of(notification), separators=(",", ":"), sort_keys=True)
    headers = signed_headers(
        endpoint, message_id=notification.key, timestamp=timezone.now(), body=body
    )
    return post(endpoint.url, body=body, headers=headers)
