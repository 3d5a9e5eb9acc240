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


class DriftRun(models.Model):
    """One scheduled drift check over every ready identity, done in batches (provisioning.drift).

    The cursor (the last identity checked, by id) survives a worker or beat restart, so a run
    continues where it stopped; at most one run is active (a partial unique constraint), and a
    batch holds a lease so two batches of a run never overlap.
    """

    active = models.BooleanField(default=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    cursor = models.BigIntegerField(default=0, help_text="id of the last identity checked")
    total = models.PositiveIntegerField(default=0, help_text="ready identities when it started")
    checked = models.PositiveIntegerField(default=0)
    drifted = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    reads = models.PositiveIntegerField(default=0, help_text="ARM reads made, retries included")
    throttled = models.PositiveIntegerField(default=0, help_text="429 answers")
    batches = models.PositiveIntegerField(default=0)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["active"],
                condition=models.Q(active=True),
                name="drift_run_one_active",
            ),
        ]

    def __str__(self) -> str:
        return f"drift run {self.pk} from {self.started_at:%Y-%m-%d %H:%M}"
