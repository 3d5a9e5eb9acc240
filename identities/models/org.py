"""Teams, clusters, namespace ownership and the role catalog: what admins configure."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from identities.validators import (
    RESERVED_NAMESPACE_PREFIXES,
    RESERVED_NAMESPACES,
    validate_aks_cluster_name,
    validate_dns1123_label,
    validate_guid,
    validate_guid_list,
    validate_namespace_grantable,
    validate_oidc_issuer_url,
    validate_resource_group,
    validate_string_list,
)


class Team(models.Model):
    """An app team: its members file requests; it owns namespaces and its identities."""

    name = models.CharField(max_length=63, unique=True, validators=[validate_dns1123_label])
    description = models.TextField(blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMembership", related_name="teams", blank=True
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    """One person on one team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="teammembership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class Cluster(models.Model):
    """An AKS cluster apps run on, and where (subscription, resource group, location) their
    identities are created. The OIDC issuer URL is kept byte for byte as Azure reports it."""

    name = models.CharField(max_length=63, unique=True, validators=[validate_aks_cluster_name])
    subscription_id = models.CharField(max_length=36, validators=[validate_guid])
    resource_group = models.CharField(max_length=90, validators=[validate_resource_group])
    location = models.CharField(max_length=64)
    cluster_resource_group = models.CharField(
        max_length=90,
        blank=True,
        validators=[validate_resource_group],
        help_text="The AKS cluster's own resource group, when not the identities' one.",
    )
    oidc_issuer_url = models.CharField(
        "OIDC issuer URL", max_length=600, validators=[validate_oidc_issuer_url]
    )
    workload_identity_enabled = models.BooleanField(default=True)
    allowed_scope_subscriptions = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_guid_list],
        help_text="Subscription ids role assignments for this cluster's identities may target.",
    )
    apply_service_account = models.BooleanField(
        default=False, help_text="The portal may server-side-apply the ServiceAccount itself."
    )
    emulated = models.BooleanField(default=False, help_text="A sandbox cluster of the emulator.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def aks_resource_group(self) -> str:
        """Where the managedClusters resource itself lives (for ARM GETs of the cluster)."""
        return self.cluster_resource_group or self.resource_group

    def allows_subscription(self, subscription_id: str) -> bool:
        return subscription_id.lower() in {s.lower() for s in self.allowed_scope_subscriptions}


class NamespaceOwnership(models.Model):
    """Team X owns namespace N on cluster C; only X may bind identities to ServiceAccounts in N.
    Platform namespaces (kube-system, AKS add-ons) can never be granted: a CheckConstraint too."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="namespaces")
    namespace = models.CharField(max_length=63, validators=[validate_namespace_grantable])
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="namespaces")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["cluster__name", "namespace"]
        verbose_name_plural = "namespace ownership"
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "namespace"], name="namespaceownership_unique"
            ),
            models.CheckConstraint(
                condition=~Q(namespace__in=sorted(RESERVED_NAMESPACES))
                & ~Q(namespace__startswith=RESERVED_NAMESPACE_PREFIXES[0]),
                name="namespaceownership_not_reserved",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cluster}/{self.namespace} → {self.team}"


class ResourceGroupOwnership(models.Model):
    """Team X owns resource group G in subscription S: a role on a scope inside G is X's own
    business; another team asking for one needs X's approval too (a cross-team request)."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="resource_groups")
    subscription_id = models.CharField(max_length=36, validators=[validate_guid])
    resource_group = models.CharField(max_length=90, validators=[validate_resource_group])
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["subscription_id", "resource_group"]
        verbose_name_plural = "resource group ownership"
        constraints = [
            # ARM names are case-insensitive: one owner per group, however it is spelled.
            models.UniqueConstraint(
                Lower("subscription_id"),
                Lower("resource_group"),
                name="resourcegroupownership_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_group} ({self.subscription_id}) → {self.team}"

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id.lower()}/resourceGroups/{self.resource_group}"


class CatalogRole(models.Model):
    """A curated Azure built-in role teams may request (seeded from AZURE-FACTS.md §5)."""

    name = models.CharField(max_length=128, unique=True)
    role_definition_guid = models.CharField(
        "role definition GUID", max_length=36, unique=True, validators=[validate_guid]
    )
    description = models.TextField(blank=True)
    resource_types = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text="ARM resource types the role makes sense on (empty: any).",
    )
    privileged = models.BooleanField(
        default=False, help_text="Refused unless the request is an exception (two approvers)."
    )
    can_assign_roles = models.BooleanField(
        default=False, help_text="Grants Microsoft.Authorization/roleAssignments/write."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def role_definition_id(self, subscription_id: str) -> str:
        """The subscription form used in a role assignment's roleDefinitionId (AZURE-FACTS §5)."""
        return (
            f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization"
            f"/roleDefinitions/{self.role_definition_guid}"
        )
