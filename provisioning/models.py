"""What the worker did: provisioning steps (the live progress view) and verification results."""

from __future__ import annotations

from django.db import models


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ProvisioningStep(models.Model):
    """One Azure operation of a request's reconcile run; a rerun updates the same row by key."""

    identity_request = models.ForeignKey(
        "identities.IdentityRequest", on_delete=models.CASCADE, related_name="steps"
    )
    key = models.CharField(max_length=200, help_text="Stable id within the request, e.g. fic:NAME")
    label = models.CharField(max_length=300)
    position = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    azure_request_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["identity_request", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["identity_request", "key"], name="step_unique_key"),
            models.CheckConstraint(
                condition=models.Q(status__in=StepStatus.values), name="step_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.status}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class VerificationOutcome(models.TextChoices):
    WORKS = "works", "Federation works"
    PROPAGATING = "propagating", "Propagating"
    FAILED = "failed", "Failed"
    # The exchange could not be made (Entra's token endpoint unreachable): nothing is known
    # about the federation itself, which is not the same as a failed check.
    INCONCLUSIVE = "inconclusive", "Could not check"


class Verification(models.Model):
    """The result of one token-exchange check of a federated credential."""

    identity_request = models.ForeignKey(
        "identities.IdentityRequest", on_delete=models.CASCADE, related_name="verifications"
    )
    federated_credential = models.ForeignKey(
        "identities.FederatedCredential", on_delete=models.CASCADE, related_name="verifications"
    )
    outcome = models.CharField(max_length=16, choices=VerificationOutcome.choices)
    error_code = models.CharField(max_length=40, blank=True, help_text="e.g. AADSTS70021")
    summary = models.TextField()
    mismatches = models.JSONField(
        default=list, blank=True, help_text="[{field, expected, presented, explanation}]"
    )
    token_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(outcome__in=VerificationOutcome.values),
                name="verification_outcome_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.federated_credential_id}: {self.outcome}"
