"""The delivery worker's writes: claim an outbox row, send it, record the outcome.

Each row is delivered in a transaction of its own that holds the row's lock (SELECT … FOR UPDATE
SKIP LOCKED) while the message is handed to the mail server: two workers never send one row, a
worker killed mid-send rolls back and leaves the row pending for the next, and a row is marked
delivered only by the transaction that sent it. A failure (the mail server is down, refuses the
recipient) is recorded on that row alone, which is retried later with exponential backoff; the
others go on. So is anything else a row raises (a bug, an endpoint URL stored before it was
validated): it is undone to a savepoint in the row's transaction and recorded as that row's failed
attempt. SMTP has no two-phase commit: a crash after the server's final "250" and before the
commit would send once more, which is why the Message-ID is fixed by the row (its opaque
`message_id`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import smtplib
import socket
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from identities.models import (
    DeliveryStatus,
    Notification,
    NotificationChannel,
    NotificationPreference,
    WebhookDelivery,
)
from identities.services import webhook_endpoint_disable
from notifications import webhooks
from notifications.email import build_digest, build_message, open_connection

logger = logging.getLogger(__name__)

ERROR_MAX = 2000
# What a failed send raises: the server is down or slow (OSError: refused, reset, timeout) or
# answered with an SMTP error. Anything else is a bug: a failed attempt too, logged with its
# traceback for the operators (`_unexpected`), the others go on.
SEND_ERRORS = (smtplib.SMTPException, OSError, socket.timeout)


def backoff(attempts: int, *, webhook: bool = False) -> timedelta:
    """The wait before attempt `attempts + 1`: doubling from NOTIFICATION_BACKOFF_SECONDS up to
    NOTIFICATION_BACKOFF_MAX_SECONDS (WEBHOOK_… for webhooks), with up to 10 % jitter so a
    recovered server is not hit by every row at once."""
    first, most = (
        (settings.WEBHOOK_BACKOFF_SECONDS, settings.WEBHOOK_BACKOFF_MAX_SECONDS)
        if webhook
        else (settings.NOTIFICATION_BACKOFF_SECONDS, settings.NOTIFICATION_BACKOFF_MAX_SECONDS)
    )
    wait = min(first * (2 ** max(attempts - 1, 0)), most)
    return timedelta(seconds=wait * (1 + random.random() / 10))  # noqa: S311 - jitter, not crypto


def _due() -> QuerySet[Notification]:
    """Immediate email and webhook rows whose attempt is due (a disabled endpoint's rows wait
    until it is switched back on and they are redelivered)."""
    return Notification.objects.filter(
        status=DeliveryStatus.PENDING,
        channel__in=(NotificationChannel.EMAIL, NotificationChannel.WEBHOOK),
        digest=False,
        next_attempt_at__lte=timezone.now(),
    ).filter(Q(endpoint__isnull=True) | Q(endpoint__is_active=True))


def notifications_due(*, limit: int) -> list[str]:
    """Keys of immediate email and webhook rows whose (next) attempt is due, oldest first."""
    return list(_due().order_by("next_attempt_at", "id").values_list("key", flat=True)[:limit])


class MailSession:
    """One connection to the mail server shared by a batch of deliveries (opened on first use;
    dropped after a failed send, so the next row starts afresh)."""

    def __init__(self) -> None:
        self._connection: BaseEmailBackend | None = None

    def send(self, notification: Notification) -> None:
        if self._connection is None:
            self._connection = open_connection()
            self._connection.open()
        try:
            build_message(notification, connection=self._connection).send()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(*SEND_ERRORS):
                self._connection.close()
            self._connection = None

    def __enter__(self) -> MailSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def notification_deliver(*, key: str, mail: MailSession | None = None) -> str:
    """Send one outbox row if it is pending and due, and record the outcome. Returns what
    happened: "delivered", "retry", "failed", or "skipped" (not due, already delivered, or
    another worker holds it). Whatever the row raises is its failed attempt, never the batch's
    end (only the task's soft time limit ends it: the rest wait for the sweep)."""
    with transaction.atomic():
        notification = (
            _due()
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("recipient", "identity_request__team", "identity__team")
            .select_related("identity_request__cluster", "identity__cluster", "endpoint")
            .filter(key=key)
            .first()
        )
        if notification is None:
            return "skipped"
        webhook = notification.channel == NotificationChannel.WEBHOOK
        try:
            # A savepoint: what a failed attempt half wrote is undone, the row's lock is kept
            # and its failure recorded below (a database error inside is undone with it).
            with transaction.atomic():
                if webhook:
                    return _deliver_webhook(notification)
                return _deliver_email(notification, mail)
        except SoftTimeLimitExceeded:
            raise
        except Exception as error:
            return _record_failure(
                [notification], _unexpected(notification, error), webhook=webhook
            )


def _deliver_email(notification: Notification, mail: MailSession | None) -> str:
    try:
        if mail is not None:
            mail.send(notification)
        else:
            with MailSession() as session:
                session.send(notification)
    except SEND_ERRORS as error:
        return _record_failure([notification], error)
    return _mark_delivered(notification)


def _mark_delivered(notification: Notification) -> str:
    Notification.objects.filter(pk=notification.pk).update(
        status=DeliveryStatus.DELIVERED,
        delivered_at=timezone.now(),
        attempts=notification.attempts + 1,
        last_error="",
    )
    return "delivered"


def _unexpected(notification: Notification, error: Exception) -> str:
    """Log an unexpected exception of a delivery for the operators (with its traceback) and
    say in a line what the row's owners see: its type, not its message (which may carry
    anything, a secret included)."""
    logger.exception("notification %s: delivery raised", notification.pk)
    return (
        f"The delivery failed on the portal's side ({type(error).__name__}); "
        "the operators' log has the details."
    )


def _deliver_webhook(notification: Notification) -> str:
    """Post one webhook row (the caller holds its lock) and log the attempt on its endpoint;
    giving it up disables the endpoint and tells its team."""
    endpoint = notification.endpoint
    assert endpoint is not None  # noqa: S101 - a webhook row names its endpoint
    try:
        result = webhooks.deliver(notification)
    except SoftTimeLimitExceeded:
        raise
    except Exception as error:
        # Logged on the endpoint like any failed attempt, so its team sees why.
        result = webhooks.WebhookResult(None, 0, _unexpected(notification, error))
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        notification=notification,
        status_code=result.status_code,
        duration_ms=result.duration_ms,
        error=result.error,
    )
    if result.ok:
        return _mark_delivered(notification)
    outcome = _record_failure([notification], result.error, webhook=True)
    if outcome == "failed":
        webhook_endpoint_disable(
            endpoint=endpoint,
            reason=f"Gave up on a delivery after {notification.attempts + 1} attempts: "
            f"{result.error}",
        )
    return outcome


def _record_failure(
    notifications: Iterable[Notification], error: BaseException | str, *, webhook: bool = False
) -> str:
    """Count the attempt, keep the error, schedule the next one (or give up past the limit)."""
    outcome = "retry"
    described = (error if isinstance(error, str) else f"{type(error).__name__}: {error}")[
        :ERROR_MAX
    ]
    limit = settings.WEBHOOK_MAX_ATTEMPTS if webhook else settings.NOTIFICATION_MAX_ATTEMPTS
    for notification in notifications:
        attempts = notification.attempts + 1
        changes: dict[str, Any] = {"attempts": attempts, "last_error": described}
        if attempts >= limit:
            changes["status"] = DeliveryStatus.FAILED
            outcome = "failed"
        else:
            changes["next_attempt_at"] = timezone.now() + backoff(attempts, webhook=webhook)
        Notification.objects.filter(pk=notification.pk).update(**changes)
        logger.warning(
            "notification %s: attempt %d failed (%s)", notification.pk, attempts, described
        )
    return outcome


def deliver_due(*, limit: int | None = None) -> dict[str, int]:
    """Send every due row, one at a time (the periodic sweep, and a backstop for lost
    messages). One failing row never stops the rest."""
    counts: dict[str, int] = {}
    with MailSession() as mail:
        for key in notifications_due(limit=limit or settings.NOTIFICATION_SWEEP_BATCH):
            outcome = notification_deliver(key=key, mail=mail)
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def digests_due() -> list[int]:
    """Users with digest rows waiting whose last digest is at least a digest interval old."""
    cutoff = timezone.now() - timedelta(seconds=settings.NOTIFICATION_DIGEST_INTERVAL_SECONDS)
    waiting = set(
        Notification.objects.filter(
            status=DeliveryStatus.PENDING,
            channel=NotificationChannel.EMAIL,
            digest=True,
            next_attempt_at__lte=timezone.now(),
        ).values_list("recipient_id", flat=True)
    )
    recent = set(
        NotificationPreference.objects.filter(
            user_id__in=waiting, last_digest_at__gt=cutoff
        ).values_list("user_id", flat=True)
    )
    return sorted(waiting - recent)


def digest_deliver(*, user_id: int) -> str:
    """Send one user's waiting digest rows as one message and mark them all delivered (or all
    retried later), under the rows' locks like a single delivery."""
    with transaction.atomic():
        rows = list(
            Notification.objects.filter(
                recipient_id=user_id,
                status=DeliveryStatus.PENDING,
                channel=NotificationChannel.EMAIL,
                digest=True,
                next_attempt_at__lte=timezone.now(),
            )
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("recipient", "identity_request__team", "identity__team")
            .select_related("identity_request__cluster")
            .order_by("created_at", "id")
        )
        if not rows:
            return "skipped"
        recipient = rows[0].recipient
        try:
            build_digest(recipient, rows).send()
        except SEND_ERRORS as error:
            return _record_failure(rows, error)
        now = timezone.now()
        Notification.objects.filter(pk__in=[row.pk for row in rows]).update(
            status=DeliveryStatus.DELIVERED, delivered_at=now, last_error=""
        )
        NotificationPreference.objects.update_or_create(
            user=recipient, defaults={"last_digest_at": now}
        )
        return "delivered"
