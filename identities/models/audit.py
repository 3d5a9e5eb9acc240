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
