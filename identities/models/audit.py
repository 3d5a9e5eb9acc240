"""The append-only, hash-chained audit trail. Rows are written only by `identities.audit`."""

from __future__ import annotations

from django.conf import settings
from django.db import models

GENESIS_HASH = "0" * 64


class AuditEvent(models.Model):
    """One recorded action. `hash` = SHA-256(prev_hash + canonical JSON of the row), so altering,
    removing or reordering any row breaks the chain at that row (`manage.py audit_verify`).
    PostgreSQL refuses UPDATE and DELETE on this table (migration 0004)."""

    # Assigned by audit_record() as previous id + 1 under the append lock: gapless and hashed.
    id = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty when the system acted.",
    )
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=100)
    identity_request = models.ForeignKey(
        "identities.IdentityRequest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    identity = models.ForeignKey(
        "identities.Identity",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["action"], name="auditevent_action"),
            models.Index(fields=["created_at"], name="auditevent_created_at"),
        ]
        constraints = [
            # Two rows claiming the same predecessor would be a fork.
            models.UniqueConstraint(fields=["prev_hash"], name="auditevent_no_fork"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} by {self.actor_label}"


class ChainCheckStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    ERROR = "error", "Could not finish"


class ChainCheckTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Scheduled"
    COMMAND = "command", "manage.py audit_verify"
    USER = "user", "Started from the audit page"


class AuditChainCheck(models.Model):
    """One walk of the whole audit chain and its verdict (written by identities.services).

    A passed check is also an anchor: it records the hash of the last row it verified, signed
    with the portal's SECRET_KEY. Later checks and the audit page compare that row's hash with
    the anchor, so a chain rewritten from some row on (hashes recomputed to the end) or cut
    short is caught by someone who can write the database but does not hold the key.
    """

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=16, choices=ChainCheckTrigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty when the schedule or an operator's command started it.",
    )
    status = models.CharField(
        max_length=16, choices=ChainCheckStatus.choices, default=ChainCheckStatus.RUNNING
    )
    # How many rows the chain held when the walk started (progress is shown against it).
    rows_expected = models.BigIntegerField(default=0)
    rows_checked = models.BigIntegerField(default=0)
    last_id = models.BigIntegerField(null=True, blank=True)
    last_hash = models.CharField(max_length=64, blank=True)
    broken_id = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    signature = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["status", "-finished_at"], name="chaincheck_status")]
        constraints = [
            # One check runs at a time, even when two start at the same instant.
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status="running"),
                name="chaincheck_one_running",
            )
        ]

    def __str__(self) -> str:
        return f"audit chain check #{self.pk}: {self.status}"
