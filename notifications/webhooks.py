"""Webhook delivery: the payload signed per the Standard Webhooks specification, posted through
an SSRF guard.

Signing (https://www.standardwebhooks.com/, spec/standard-webhooks.md): headers `webhook-id`
(the row's opaque `message_id`, never an internal id; the same on every retry of one message,
so receivers can de-duplicate), `webhook-timestamp`
(Unix seconds) and `webhook-signature` (space-separated `v1,<base64 HMAC-SHA256>` of
`{id}.{timestamp}.{body}`, one per secret: during a rotation both the new and the previous
secret sign). The signatures come from the `standardwebhooks` library's own `Webhook.sign`.

The guard (identities.outbound, shared with accounts.oidc): https only (http with DEBUG or
WEBHOOK_ALLOW_HTTP); the host is resolved with getaddrinfo and every address must be public (no
private, loopback, link-local, unique-local, multicast, reserved or unspecified address,
IPv4-mapped ones included) unless the host is in WEBHOOK_ALLOWED_HOSTS or the address in
WEBHOOK_ALLOWED_CIDRS; the connection goes to the vetted address itself (Host header and TLS SNI
carry the name, the certificate is checked against it, trusted by the system's store or
WEBHOOK_CA_BUNDLE), and the connected socket's peer address is checked again. Redirects are not
followed (a 3xx is a failed delivery); the response is read up to WEBHOOK_MAX_RESPONSE_BYTES
within the time limit. A refused address is named to the operators' log only: the team's
delivery log says which rule refused it ("a loopback address"), never what the name resolved to.
"""

from __future__ import annotations

import http.client
import json
import logging
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

from identities import outbound
from identities.models import Notification, WebhookEndpoint, WebhookFormat
from identities.outbound import IPAddress
from notifications import chat

USER_AGENT = "workload-identity-portal-webhooks"

logger = logging.getLogger(__name__)


# The guard itself is shared with accounts.oidc (identities.outbound); refusals keep their name.
WebhookRefusedError = outbound.DestinationRefusedError


@dataclass(frozen=True)
class WebhookResult:
    status_code: int | None
    duration_ms: int
    error: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


def _allow_list() -> outbound.AllowList:
    return outbound.AllowList.of(settings.WEBHOOK_ALLOWED_HOSTS, settings.WEBHOOK_ALLOWED_CIDRS)


def _schemes() -> frozenset[str]:
    return frozenset(
        {"https"} | ({"http"} if settings.DEBUG or settings.WEBHOOK_ALLOW_HTTP else set())
    )


def resolve(url: str) -> tuple[str, int, IPAddress]:
    """The URL's host, port and the address to connect to; every address the name resolves to
    must pass (one bad answer among good ones is refused: DNS could hand out either)."""
    parts = urlsplit(url)
    if parts.scheme not in _schemes():
        raise WebhookRefusedError(f"{parts.scheme}:// is not allowed; use https://.")
    host = parts.hostname or ""
    if not host:
        raise WebhookRefusedError("The URL names no host.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # past 65535, or not a number: a URL stored before validation
        raise WebhookRefusedError(f"The URL's port is invalid: {exc}.") from exc
    return host, port, outbound.resolve(host, port, _allow_list())


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


def refusal_shown(refused: WebhookRefusedError) -> str:
    """What the team's delivery log says of a refusal: the rule, never the address the name
    resolved to (what an internal name points at is the operators' to know, logged here)."""
    if not refused.reason:
        return f"Refused: {refused}"  # the scheme, no host, a name that does not resolve
    logger.warning(
        "webhook refused: %s resolves to %s, a %s address",
        refused.host,
        refused.address,
        refused.reason,
    )
    article = "an" if refused.reason[0] in "aeiou" else "a"
    return f"Refused: the host resolves to {article} {refused.reason} address."


def post(url: str, *, body: str, headers: dict[str, str]) -> WebhookResult:
    """POST once through the guard; the outcome, never an exception."""
    started = time.monotonic()
    deadline = started + settings.WEBHOOK_TIMEOUT_SECONDS

    def result(status: int | None, error: str) -> WebhookResult:
        return WebhookResult(status, int((time.monotonic() - started) * 1000), error[:1000])

    try:
        connection, path = outbound.open_http(
            url,
            allow=_allow_list(),
            schemes=_schemes(),
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            ca_bundle=settings.WEBHOOK_CA_BUNDLE,
        )
        connection.request("POST", path, body=body.encode(), headers=headers)
        response = connection.getresponse()
        _, cut = outbound.read_capped(
            response, limit=settings.WEBHOOK_MAX_RESPONSE_BYTES, deadline=deadline
        )
        connection.close()
        if cut == "too_slow":
            return result(response.status, "The receiver took too long to answer.")
    except WebhookRefusedError as exc:
        return result(None, refusal_shown(exc))
    except (OSError, http.client.HTTPException) as exc:
        return result(None, f"{type(exc).__name__}: {exc}")
    except ValueError as exc:
        # The URL cannot be parsed or looked up (a port past 65535, "[zz]" as the host, an empty
        # DNS label): an endpoint stored before validate_webhook_url checked these.
        return result(None, f"The URL cannot be used: {exc}.")
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
        endpoint, message_id=notification.message_id, timestamp=timezone.now(), body=body
    )
    return post(endpoint.url, body=body, headers=headers)
