"""The notification outbox: one row per (event, recipient, channel), written in the transaction
that changed the state, delivered afterwards by the `notifications` app's workers.

The row is the promise: if it committed, the event happened and someone will be told; if the
transaction rolled back, there is nothing to tell. Delivery claims rows one at a time
(SELECT … FOR UPDATE SKIP LOCKED), so workers never share one, and marks each delivered once.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from identities.encryption import EncryptedTextField
from identities.models.azure import Identity
from identities.models.org import Team
from identities.models.requests import IdentityRequest


class WebhookFormat(models.TextChoices):
    """What the receiver expects: a signed Standard Webhooks event, or a chat message for a
    Microsoft Teams or Slack incoming webhook (whose URL is its secret: nothing is signed)."""

    STANDARD = "standard", "Standard Webhooks (signed JSON event)"
    TEAMS = "teams", "Microsoft Teams incoming webhook (Adaptive Card)"
    SLACK = "slack", "Slack incoming webhook (Block Kit message)"


class WebhookEndpoint(models.Model):
    """A receiver of signed event payloads (Standard Webhooks): a team's, or global (team
    empty: security's, every event). The signing secret is kept to sign with; it is shown once,
    at creation or rotation. After a rotation the previous secret signs too until it expires."""

    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    # Encrypted at rest too: a Teams or Slack incoming webhook URL is itself the credential (its
    # path, or a Workflows `sig=`), and any receiver's URL may carry a token in its query. Length
    # (2,000) and scheme are checked by validate_webhook_url before it is stored.
    url = EncryptedTextField()
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list)
    format = models.CharField(
        max_length=16, choices=WebhookFormat.choices, default=WebhookFormat.STANDARD
    )
    # Encrypted at rest (identities.encryption, FIELD_ENCRYPTION_KEYS): the portal signs with
    # them, so they cannot be hashed; a database dump alone does not forge deliveries.
    secret = EncryptedTextField()
    previous_secret = EncryptedTextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(format__in=WebhookFormat.values), name="webhookendpoint_format_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"webhook {self.pk} of {self.team or 'security'}"

    @property
    def shown_url(self) -> str:
        """The URL as pages, the API and the trail show it: a Teams or Slack incoming webhook
        URL is itself the credential, so only its scheme and host show, with a SHA-256 prefix to
        tell two URLs apart; a standard endpoint's URL is shown whole (it is not a secret, and
        its owners need to see where events go)."""
        if self.format == WebhookFormat.STANDARD:
            return self.url
        parts = urlsplit(self.url)
        fingerprint = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        return f"{parts.scheme}://{parts.hostname}/… (sha256 {fingerprint})"

    def signing_secrets(self, now: Any = None) -> list[str]:
        """The secrets a payload is signed with now: the current one, and the previous one
        while its grace period runs."""
        now = now or timezone.now()
        signing = [self.secret]
        if (
            self.previous_secret
            and self.previous_secret_expires_at
            and (self.previous_secret_expires_at > now)
        ):
            signing.append(self.previous_secret)
        return signing


class NotificationEvent(models.TextChoices):
    """What someone must act on or know about (the label is what the preferences page shows)."""

    REQUEST_FILED = "request_filed", "A request waits for my approval"
    REQUEST_APPROVED = "request_approved", "My team's request was approved"
    REQUEST_REJECTED = "request_rejected", "My team's request was rejected"
    REQUEST_SENT_BACK = "request_sent_back", "My team's request was sent back for changes"
    REQUEST_READY = "request_ready", "My team's request is ready"
    REQUEST_FAILED = "request_failed", "My team's request failed"
    DRIFT_DETECTED = "drift_detected", "Drift was found on my team's identity"
    WEBHOOK_DISABLED = "webhook_disabled", "My team's webhook was disabled after failures"
    ACCESS_EXPIRING = "access_expiring", "My team's time-bound access ends soon"


class NotificationChannel(models.TextChoices):
    INBOX = "inbox", "In the portal"
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # to be sent (now, later after a failure, or in the next digest)
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after NOTIFICATION_MAX_ATTEMPTS; last_error says why


class EmailFrequency(models.TextChoices):
    IMMEDIATE = "immediate", "Immediately, one email per event"
    DAILY = "daily", "Once a day, in a digest"


def new_message_id() -> str:
    """An opaque, unique message id (`msg_` and 128 random bits in hex): what a receiver sees
    as `webhook-id`, telling nothing of the portal's row ids or how many events there were."""
    return "msg_" + secrets.token_hex(16)


class Notification(models.Model):
    """One event for one recipient on one channel. `key` is the idempotency key (event
    occurrence, recipient, channel): writing the same notification twice is a no-op.
    `message_id` is the id shown outside (the Standard Webhooks `webhook-id`): one per row, so
    every retry or redelivery of the message carries the same one."""

    Event = NotificationEvent
    Channel = NotificationChannel
    Status = DeliveryStatus

    key = models.CharField(max_length=200, unique=True)
    message_id = models.CharField(
        max_length=40, unique=True, default=new_message_id, editable=False
    )
    event = models.CharField(max_length=32, choices=NotificationEvent.choices)
    channel = models.CharField(max_length=16, choices=NotificationChannel.choices)
    # A person (inbox, email) or a webhook endpoint (webhook).
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    identity_request = models.ForeignKey(
        IdentityRequest,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    identity = models.ForeignKey(
        Identity, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    # What the message says beyond the objects (the actor, a comment, an error, the findings).
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    digest = models.BooleanField(default=False, help_text="Sent in the recipient's daily digest.")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="notification_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=NotificationChannel.values),
                name="notification_channel_valid",
            ),
            models.CheckConstraint(
                condition=(
                    Q(channel=NotificationChannel.WEBHOOK, endpoint__isnull=False)
                    | (
                        ~Q(channel=NotificationChannel.WEBHOOK)
                        & Q(recipient__isnull=False, endpoint__isnull=True)
                    )
                ),
                name="notification_addressee_matches_channel",
            ),
        ]
        indexes = [
            # The delivery workers' scan: pending rows that are due, oldest first.
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=Q(status=DeliveryStatus.PENDING),
                name="notification_due_idx",
            ),
            # The inbox and its unread count.
            models.Index(fields=["recipient", "channel", "read_at"], name="notification_inbox_idx"),
        ]

    def __str__(self) -> str:
        to = self.recipient_id or f"endpoint {self.endpoint_id}"
        return f"{self.event} for {to} by {self.channel} ({self.status})"


class WebhookDelivery(models.Model):
    """One attempt to deliver a webhook row: what the receiver answered, or why it could not."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="deliveries"
    )
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return f"delivery of {self.notification_id}: {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def default_email_events() -> list[str]:
    return list(NotificationEvent.values)


class NotificationPreference(models.Model):
    """What one person wants by email and how often; without a row, every event immediately.
    The in-portal inbox always records every event."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    email_events = models.JSONField(default=default_email_events, blank=True)
    email_frequency = models.CharField(
        max_length=16, choices=EmailFrequency.choices, default=EmailFrequency.IMMEDIATE
    )
    last_digest_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(email_frequency__in=EmailFrequency.values),
                name="notificationpreference_frequency_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"notification preferences of {self.user_id}"
