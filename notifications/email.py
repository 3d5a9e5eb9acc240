"""Email messages for outbox rows: plain text and HTML from templates, with an absolute link
(PORTAL_BASE_URL) to the page the reader acts on. Sent through Django's email framework, so the
backend (SMTP, console, file) is configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.template.loader import render_to_string
from django.urls import reverse

from identities.models import Notification, NotificationEvent

SUBJECTS: dict[str, str] = {
    NotificationEvent.REQUEST_FILED: "Request #{pk} for {app} ({team}) waits for your approval",
    NotificationEvent.REQUEST_APPROVED: "Request #{pk} for {app} ({team}) was approved",
    NotificationEvent.REQUEST_REJECTED: "Request #{pk} for {app} ({team}) was rejected",
    NotificationEvent.REQUEST_SENT_BACK: "Request #{pk} for {app} ({team}) was sent back to you",
    NotificationEvent.REQUEST_READY: "Request #{pk} for {app} ({team}) is ready",
    NotificationEvent.REQUEST_FAILED: "Request #{pk} for {app} ({team}) failed",
    NotificationEvent.DRIFT_DETECTED: "Drift found on identity {identity} ({team})",
    NotificationEvent.WEBHOOK_DISABLED: "A webhook was disabled after failed deliveries",
    NotificationEvent.ACCESS_EXPIRING: "Access of identity {identity} ({team}) ends soon",
}


def absolute_link(notification: Notification) -> str:
    """The page the notification is about, as an absolute URL the reader's mail client opens."""
    if notification.identity_request_id is not None:
        path = reverse("request_detail", args=[notification.identity_request_id])
    elif notification.identity_id is not None:
        path = reverse("identity_detail", args=[notification.identity_id])
    else:
        path = reverse("notification_inbox")
    return settings.PORTAL_BASE_URL.rstrip("/") + path


def subject_of(notification: Notification) -> str:
    identity_request = notification.identity_request
    identity = notification.identity
    subject = identity_request or identity
    team = subject.team.name if subject is not None else ""
    return SUBJECTS[notification.event].format(
        pk=notification.identity_request_id or "",
        app=identity_request.app_name if identity_request else "",
        identity=identity.name if identity else "",
        team=team,
    )


def _context(notification: Notification) -> dict[str, Any]:
    return {
        "notification": notification,
        "subject": subject_of(notification),
        "link": absolute_link(notification),
        "identity_request": notification.identity_request,
        "identity": notification.identity,
        "data": notification.data,
        "preferences_link": settings.PORTAL_BASE_URL.rstrip("/")
        + reverse("notification_preferences"),
    }


def message_id(opaque: str) -> str:
    """A Message-ID from the outbox row's opaque `message_id` (random, fixed when the row is
    written): the same notification always carries the same one, so a receiver can tell a
    resend (SMTP has no exactly-once) from a second event, and it tells nothing of the portal's
    row ids (the row's key names the audit row and the recipient's id)."""
    domain = settings.NOTIFICATION_MESSAGE_ID_DOMAIN
    return f"<{opaque}@{domain}>"


def build_message(
    notification: Notification, *, connection: BaseEmailBackend | None = None
) -> EmailMultiAlternatives:
    """One notification as a multipart (text + HTML) message to its recipient."""
    context = _context(notification)
    recipient = notification.recipient
    assert recipient is not None  # noqa: S101 - an email row names its recipient
    message = EmailMultiAlternatives(
        subject=context["subject"],
        body=render_to_string("notifications/email/message.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient.email],
        headers={"Message-ID": message_id(notification.message_id)},
        connection=connection,
    )
    message.attach_alternative(
        render_to_string("notifications/email/message.html", context), "text/html"
    )
    return message


def build_digest(recipient: Any, notifications: list[Notification]) -> EmailMultiAlternatives:
    """Several notifications for one person as one daily message (its Message-ID from the
    first row's, so a resend of the same digest carries the same one)."""
    items = [_context(notification) for notification in notifications]
    context = {
        "recipient": recipient,
        "items": items,
        "inbox_link": settings.PORTAL_BASE_URL.rstrip("/") + reverse("notification_inbox"),
        "preferences_link": settings.PORTAL_BASE_URL.rstrip("/")
        + reverse("notification_preferences"),
    }
    message = EmailMultiAlternatives(
        subject=f"Workload Identity Portal: {len(items)} notifications today",
        body=render_to_string("notifications/email/digest.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient.email],
        headers={"Message-ID": message_id(f"digest.{notifications[0].message_id}")},
    )
    message.attach_alternative(
        render_to_string("notifications/email/digest.html", context), "text/html"
    )
    return message


def open_connection() -> BaseEmailBackend:
    """A connection of the configured backend; SMTP errors are raised, never swallowed."""
    return get_connection(fail_silently=False)
