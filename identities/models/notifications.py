"""The notification outbox: one row per (event, recipient, channel), written in the transaction
that changed the state, delivered afterwards by the `notifications` app's workers.

The row is the promise: if it committed, the event happened and someone will be told; if the
transaction rolled back, there is nothing to tell. Delivery claims rows one at a time
(SELECT … FOR UPDATE SKIP LOCKED), so workers never share one, and marks each delivered once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from identities.models.azure import Identity
from identities.models.requests import IdentityRequest


class NotificationEvent(models.TextChoices):
    """What someone must act on or know about (the label is what the preferences page shows)."""

    REQUEST_FILED = "request_filed", "A request waits for my approval"
    REQUEST_APPROVED = "request_approved", "My team's request was approved"
    REQUEST_REJECTED = "request_rejected", "My team's request was rejected"
    REQUEST_READY = "request_ready", "My team's request is ready"
    REQUEST_FAILED = "request_failed", "My team's request failed"
    DRIFT_DETECTED = "drift_detected", "Drift was found on my team's identity"


class NotificationChannel(models.TextChoices):
    INBOX = "inbox", "In the portal"
    EMAIL = "email", "Email"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # to be sent (now, later after a failure, or in the next digest)
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after NOTIFICATION_MAX_ATTEMPTS; last_error says why


class EmailFrequency(models.TextChoices):
    IMMEDIATE = "immediate", "Immediately, one email per event"
    DAILY = "daily", "Once a day, in a digest"


class Notification(models.Model):
    """One event for one recipient on one channel. `key` is the idempotency key (event
    occurrence, recipient, channel): writing the same notification twice is a no-op."""

    Event = NotificationEvent
    Channel = NotificationChannel
    Status = DeliveryStatus

    key = models.CharField(max_length=200, unique=True)
    event = models.CharField(max_length=32, choices=NotificationEvent.choices)
    channel = models.CharField(max_length=16, choices=NotificationChannel.choices)
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
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
        return f"{self.event} for {self.recipient_id} by {self.channel} ({self.status})"


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
