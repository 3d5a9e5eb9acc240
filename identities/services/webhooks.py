"""Webhook endpoints: register, change, rotate the secret, delete, redeliver, and the delivery
worker's "disabled after persistent failure". Each write has its audit row; the secret never
goes on the trail (its prefix does, to tell rotations apart)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.errors import (
    ConflictError,
    DomainError,
    InputInvalidError,
    PermissionDeniedError,
)
from identities.models import (
    DeliveryStatus,
    Notification,
    NotificationChannel,
    NotificationEvent,
    Team,
    WebhookEndpoint,
    WebhookFormat,
)
from identities.policy import PolicyResult, Violation
from identities.selectors.notifications import may_manage_endpoint
from identities.services.notifications import notifications_record
from identities.work import Work, enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Events an endpoint may choose (a webhook about a webhook's own failure is never sent).
WEBHOOK_EVENTS = tuple(
    e for e in NotificationEvent.values if e != NotificationEvent.WEBHOOK_DISABLED
)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _secret_fingerprint(secret: str) -> str:
    """What the audit keeps of a signing secret: enough to tell that a rotation changed it and
    to match a secret one holds (`sha256:` and 12 hex digits of its SHA-256), and none of its
    characters (it kept `whsec_` and the first 4 of them)."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


INVALID_HOST = "must name a valid host: a DNS name (labels of 1 to 63 characters) or an IP address."


def validate_webhook_url(url: str) -> str:
    """https (http only with DEBUG or WEBHOOK_ALLOW_HTTP), a host that can be looked up, a port
    from 1 to 65535 (or none), no credentials or fragment. Where the name points is judged at
    every delivery (the SSRF guard), since DNS changes."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        # An unbalanced [ or a bracketed host that is no IP address ("https://[zz]/").
        violation = Violation("url", "invalid_host", INVALID_HOST)
        raise InputInvalidError(PolicyResult(violations=[violation])) from None
    allowed = {"https"} | ({"http"} if settings.DEBUG or settings.WEBHOOK_ALLOW_HTTP else set())
    problems: list[tuple[str, str]] = []
    if parts.scheme not in allowed:
        problems.append(("https_required", f"must start with {' or '.join(sorted(allowed))}://."))
    if not parts.hostname:
        problems.append(("host_required", "must name a host."))
    elif not _host_is_usable(parts.hostname):
        problems.append(("invalid_host", INVALID_HOST))
    if not _port_is_usable(parts):
        problems.append(("invalid_port", "must have a port from 1 to 65535, or none."))
    if parts.username or parts.password:
        problems.append(("no_credentials", "must not carry a user name or password."))
    if parts.fragment:
        problems.append(("no_fragment", "must not have a #fragment."))
    if len(url) > 2000:
        problems.append(("too_long", "must be at most 2000 characters."))
    _refuse([Violation("url", rule, message) for rule, message in problems])
    return url


def _host_is_usable(host: str) -> bool:
    """The name can be looked up: getaddrinfo encodes it with IDNA first (an empty or too long
    label raises there, at every delivery, rather than failing to resolve)."""
    if any(character.isspace() or not character.isprintable() for character in host):
        return False
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def _port_is_usable(parts: SplitResult) -> bool:
    """No port, or one from 1 to 65535 (`.port` raises past 65535 or for a non-number; port 0
    would be read as "none" at delivery and go to the default port)."""
    try:
        port = parts.port
    except ValueError:
        return False
    return port is None or port > 0


def _refuse(violations: list[Violation]) -> None:
    if violations:
        raise InputInvalidError(PolicyResult(violations=violations))


def _validate_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown:
        _refuse(
            [
                Violation(
                    "events",
                    "unknown_event",
                    f"unknown events {', '.join(unknown)}; events are {', '.join(WEBHOOK_EVENTS)}.",
                )
            ]
        )
    if not events:
        _refuse([Violation("events", "required", "choose at least one event.")])
    return [event for event in WEBHOOK_EVENTS if event in set(events)]


def _validate_format(format: str) -> str:
    if format not in WebhookFormat.values:
        _refuse(
            [
                Violation(
                    "format",
                    "unknown_format",
                    f"unknown format {format!r}; formats are {', '.join(WebhookFormat.values)}.",
                )
            ]
        )
    return format


def _require_manager(actor: User, endpoint: WebhookEndpoint | None, team: Team | None) -> None:
    if not may_manage_endpoint(actor, endpoint, team=team):
        raise PermissionDeniedError(
            "Only the team's members (or admins) manage its webhooks; global webhooks are "
            "security's (approvers) and admins'."
        )


def _describe(endpoint: WebhookEndpoint) -> dict[str, object]:
    return {
        "endpoint": endpoint.pk,
        "team": endpoint.team.name if endpoint.team else None,
        "url": endpoint.shown_url,
        "events": endpoint.events,
        "format": endpoint.format,
        "is_active": endpoint.is_active,
        "secret": _secret_fingerprint(endpoint.secret),
    }


@transaction.atomic(durable=True)
def webhook_endpoint_create(
    *,
    actor: User,
    team: Team | None,
    url: str,
    events: list[str],
    description: str = "",
    format: str = WebhookFormat.STANDARD,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its secret, which is shown this once (a Teams or
    Slack endpoint has one too, unused: its URL is what must be kept secret)."""
    _require_manager(actor, None, team)
    secret = new_secret()
    endpoint = WebhookEndpoint.objects.create(
        team=team,
        url=validate_webhook_url(url),
        events=_validate_events(events),
        format=_validate_format(format),
        description=description.strip(),
        secret=secret,
        created_by=actor,
    )
    audit_record(actor=actor, action=AuditAction.WEBHOOK_CREATED, data=_describe(endpoint))
    return endpoint, secret


@transaction.atomic(durable=True)
def webhook_endpoint_update(
    *,
    actor: User,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    events: list[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
    format: str | None = None,
) -> WebhookEndpoint:
    """Change an endpoint; switching a disabled one back on clears why it was disabled."""
    _require_manager(actor, endpoint, None)
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    before = _describe(endpoint)
    if url is not None:
        endpoint.url = validate_webhook_url(url)
    if events is not None:
        endpoint.events = _validate_events(events)
    if description is not None:
        endpoint.description = description.strip()
    if format is not None:
        endpoint.format = _validate_format(format)
    if is_active is not None:
        endpoint.is_active = is_active
        if is_active:
            endpoint.disabled_reason = ""
    endpoint.updated_at = timezone.now()
    endpoint.save()
    after = _describe(endpoint)
    # What changed, old and new: a person switching an endpoint off (or on) is plain to see
    # on the trail without comparing rows (the worker's own disable is WEBHOOK_DISABLED).
    changed = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
    audit_record(
        actor=actor, action=AuditAction.WEBHOOK_UPDATED, data={**after, "changed": changed}
    )
    return endpoint


@transaction.atomic(durable=True)
def webhook_endpoint_delete(*, actor: User, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint, its pending deliveries and its log."""
    _require_manager(actor, endpoint, None)
    described = _describe(endpoint)
    endpoint.delete()
    audit_record(actor=actor, action=AuditAction.WEBHOOK_DELETED, data=described)


@transaction.atomic(durable=True)
def webhook_endpoint_rotate_secret(
    *, actor: User, endpoint: WebhookEndpoint
) -> tuple[WebhookEndpoint, str]:
    """A new secret (shown once); the old one still signs for WEBHOOK_SECRET_GRACE_SECONDS,
    so the receiver can switch over without dropping a delivery."""
    _require_manager(actor, endpoint, None)
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    secret = new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + timedelta(
        seconds=settings.WEBHOOK_SECRET_GRACE_SECONDS
    )
    endpoint.secret = secret
    endpoint.updated_at = timezone.now()
    endpoint.save()
    audit_record(
        actor=actor,
        action=AuditAction.WEBHOOK_SECRET_ROTATED,
        data={**_describe(endpoint), "previous_valid_until": endpoint.previous_secret_expires_at},
    )
    return endpoint, secret


@transaction.atomic(durable=True)
def webhook_redeliver(*, actor: User, notification: Notification) -> Notification:
    """Send a webhook row again (after the receiver was fixed): pending, due now, attempts
    counted afresh."""
    if notification.channel != NotificationChannel.WEBHOOK or notification.endpoint is None:
        raise DomainError("Only webhook deliveries can be redelivered.")
    _require_manager(actor, notification.endpoint, None)
    if not notification.endpoint.is_active:
        raise ConflictError("The endpoint is disabled; switch it on before redelivering.")
    Notification.objects.filter(pk=notification.pk).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now(), attempts=0, last_error=""
    )
    audit_record(
        actor=actor,
        action=AuditAction.WEBHOOK_REDELIVERED,
        data={"endpoint": notification.endpoint_id, "notification": notification.pk},
    )
    key = notification.key
    transaction.on_commit(lambda: enqueue(Work.DELIVER_NOTIFICATIONS, [key]), robust=True)
    notification.refresh_from_db()
    return notification


@transaction.atomic
def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, reason: str) -> bool:
    """The delivery worker gave up on a row: switch the endpoint off and tell its team (or
    security). Idempotent: False when it was already off."""
    updated = WebhookEndpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
        is_active=False, disabled_reason=reason[:500], updated_at=timezone.now()
    )
    if not updated:
        return False
    endpoint.refresh_from_db()
    disabled = audit_record(
        actor=None,
        action=AuditAction.WEBHOOK_DISABLED,
        data={**_describe(endpoint), "reason": endpoint.disabled_reason},
    )
    notifications_record(
        event=NotificationEvent.WEBHOOK_DISABLED,
        occurrence=disabled,
        endpoint=endpoint,
        data={
            "url": endpoint.shown_url,
            "reason": endpoint.disabled_reason,
            "endpoint": endpoint.pk,
        },
    )
    return True


@transaction.atomic
def webhook_secrets_reencrypt(*, actor: User | None) -> int:
    """Encrypt every stored signing secret and URL again with the first of FIELD_ENCRYPTION_KEYS
    (after a new key was put first); then the old key can be removed. Returns how many
    endpoints."""
    endpoints = list(WebhookEndpoint.objects.select_for_update().order_by("pk"))
    for endpoint in endpoints:
        # Read with whichever key decrypts, written with the first (EncryptedTextField).
        endpoint.save(update_fields=["url", "secret", "previous_secret"])
    audit_record(
        actor=actor,
        action=AuditAction.WEBHOOK_SECRETS_REENCRYPTED,
        data={"endpoints": len(endpoints), "keys": len(settings.FIELD_ENCRYPTION_KEYS)},
    )
    return len(endpoints)
