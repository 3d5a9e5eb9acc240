"""What exists (or should exist) in Azure: identities, their federated credentials and role
assignments. Approval writes the desired rows; the provisioning worker fills in what Azure
returns and moves their statuses."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from identities.models.org import CatalogRole, Cluster, Team
from identities.naming import AUDIENCE


class IdentityStatus(models.TextChoices):
    PROVISIONING = "provisioning"
    READY = "ready"
    FAILED = "failed"
    DECOMMISSIONING = "decommissioning"
    DECOMMISSIONED = "decommissioned"


class DriftState(models.TextChoices):
    UNKNOWN = "unknown"
    IN_SYNC = "in_sync"
    DRIFTED = "drifted"


class Identity(models.Model):
    """A user-assigned managed identity (UAMI) the portal manages for one team's app."""

    Status = IdentityStatus
    DriftState = DriftState

    name = models.CharField(max_length=128)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="identities")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="identities")
    app_name = models.CharField(max_length=63)
    subscription_id = models.CharField(max_length=36)
    resource_group = models.CharField(max_length=90)
    location = models.CharField(max_length=64)
    resource_id = models.CharField(max_length=512, blank=True)
    client_id = models.CharField(max_length=36, blank=True)
    principal_id = models.CharField(max_length=36, blank=True)
    tenant_id = models.CharField(max_length=36, blank=True)
    status = models.CharField(
        max_length=16, choices=IdentityStatus.choices, default=IdentityStatus.PROVISIONING
    )
    drift_state = models.CharField(
        max_length=16, choices=DriftState.choices, default=DriftState.UNKNOWN
    )
    drift_details = models.JSONField(default=dict, blank=True)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    # Time-bound access: the expiry sweep decommissions the identity at this time; the owning
    # team was reminded of the end `reminded_for` (once per end date).
    expires_at = models.DateTimeField(null=True, blank=True)
    reminded_for = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "identities"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=IdentityStatus.values), name="identity_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(drift_state__in=DriftState.values), name="identity_drift_valid"
            ),
            # Azure names are case-insensitive; a decommissioned identity frees its name.
            models.UniqueConstraint(
                Lower("subscription_id"),
                Lower("resource_group"),
                Lower("name"),
                condition=~Q(status="decommissioned"),
                name="identity_name_unique_live",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def expected_resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}"
        )


class ChildStatus(models.TextChoices):
    """Status of a federated credential or role assignment of an identity."""

    PENDING = "pending"
    ACTIVE = "active"
    REMOVING = "removing"
    REMOVED = "removed"


class FederatedCredential(models.Model):
    """A federated identity credential: trust tokens of one ServiceAccount on one cluster."""

    Status = ChildStatus

    identity = models.ForeignKey(
        Identity, on_delete=models.PROTECT, related_name="federated_credentials"
    )
    name = models.CharField(max_length=120)
    issuer = models.CharField(max_length=600)
    subject = models.CharField(max_length=600)
    audience = models.CharField(max_length=600, default=AUDIENCE)
    namespace = models.CharField(max_length=63)
    service_account = models.CharField("ServiceAccount", max_length=253)
    identity_request = models.ForeignKey(
        "identities.IdentityRequest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="federated_credentials",
    )
    status = models.CharField(max_length=16, choices=ChildStatus.choices, default="pending")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ChildStatus.values), name="fic_status_valid"
            ),
            models.UniqueConstraint(
                fields=["identity", "name"],
                condition=~Q(status="removed"),
                name="fic_name_unique_live",
            ),
            # Portal rule, stricter than Azure's per-identity one: a ServiceAccount (issuer +
            # subject) is federated to at most one live identity.
            models.UniqueConstraint(
                fields=["issuer", "subject"],
                condition=~Q(status="removed"),
                name="fic_subject_unique_live",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.identity} ← {self.subject}"


class RoleAssignment(models.Model):
    """An Azure role assignment of an identity: one catalog role on one scope."""

    Status = ChildStatus

    identity = models.ForeignKey(
        Identity, on_delete=models.PROTECT, related_name="role_assignments"
    )
    role = models.ForeignKey(CatalogRole, on_delete=models.PROTECT, related_name="+")
    scope = models.CharField(max_length=1024)
    name = models.CharField(max_length=36, blank=True, help_text="GUID; blank until known.")
    azure_id = models.CharField(max_length=2048, blank=True)
    identity_request = models.ForeignKey(
        "identities.IdentityRequest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="role_assignments",
    )
    status = models.CharField(max_length=16, choices=ChildStatus.choices, default="pending")
    # Time-bound access: the expiry sweep removes the assignment at this time (None = never).
    expires_at = models.DateTimeField(null=True, blank=True)
    # The expiry this assignment's owners were last reminded of (once per assignment per end
    # date: a renewal sets a new end date, which earns a new reminder).
    reminded_for = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The expiry sweep's scan: live assignments with an end date.
            models.Index(
                fields=["expires_at"],
                condition=Q(expires_at__isnull=False) & ~Q(status="removed"),
                name="roleassignment_expiry_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ChildStatus.values), name="roleassignment_status_valid"
            ),
            models.UniqueConstraint(
                "identity",
                "role",
                Lower("scope"),
                condition=~Q(status="removed"),
                name="roleassignment_unique_live",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} on {self.scope}"
