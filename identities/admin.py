"""Django admin for what platform admins configure; every save and delete goes through the
config services so it lands on the audit trail. Requests, identities and audit events are
read-only here (they change only through the workflow)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest

from identities.errors import DomainError
from identities.models import (
    Approval,
    AuditEvent,
    CatalogRole,
    Cluster,
    FederatedCredential,
    Identity,
    IdentityRequest,
    NamespaceOwnership,
    RequestedRole,
    ResourceGroupOwnership,
    RoleAssignment,
    Team,
    TeamMembership,
)
from identities.services import config_object_delete, config_object_save


class AuditedAdmin(admin.ModelAdmin):
    """Saves and deletes through the config services (validated and audited)."""

    def save_model(self, request: HttpRequest, obj: Model, form: ModelForm, change: bool) -> None:
        config_object_save(actor=request.user, instance=obj)  # type: ignore[arg-type]

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        try:
            config_object_delete(actor=request.user, instance=obj)  # type: ignore[arg-type]
        except DomainError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def save_formset(
        self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            config_object_delete(actor=request.user, instance=obj)  # type: ignore[arg-type]
        for obj in instances:
            config_object_save(actor=request.user, instance=obj)  # type: ignore[arg-type]
        formset.save_m2m()


class ReadOnlyAdmin(admin.ModelAdmin):
    """Visible to staff with view permission (auditors); never changed through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 1
    autocomplete_fields = ["user"]


class ResourceGroupOwnershipInline(admin.TabularInline):
    model = ResourceGroupOwnership
    extra = 1


class NamespaceOwnershipInline(admin.TabularInline):
    model = NamespaceOwnership
    extra = 1


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name"]
    inlines = [TeamMembershipInline, ResourceGroupOwnershipInline]


@admin.register(Cluster)
class ClusterAdmin(AuditedAdmin):
    list_display = [
        "name",
        "subscription_id",
        "resource_group",
        "location",
        "workload_identity_enabled",
        "emulated",
    ]
    list_filter = ["workload_identity_enabled", "emulated", "location"]
    search_fields = ["name", "subscription_id", "resource_group"]
    inlines = [NamespaceOwnershipInline]


@admin.register(ResourceGroupOwnership)
class ResourceGroupOwnershipAdmin(AuditedAdmin):
    list_display = ["resource_group", "subscription_id", "team", "created_at"]
    list_filter = ["team", "subscription_id"]
    search_fields = ["resource_group", "subscription_id"]


@admin.register(NamespaceOwnership)
class NamespaceOwnershipAdmin(AuditedAdmin):
    list_display = ["cluster", "namespace", "team"]
    list_filter = ["cluster", "team"]
    search_fields = ["namespace"]


@admin.register(CatalogRole)
class CatalogRoleAdmin(AuditedAdmin):
    list_display = ["name", "role_definition_guid", "privileged", "can_assign_roles"]
    list_filter = ["privileged", "can_assign_roles"]
    search_fields = ["name", "role_definition_guid"]


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RequestedRoleInline(ReadOnlyInline):
    model = RequestedRole


class ApprovalInline(ReadOnlyInline):
    model = Approval


@admin.register(IdentityRequest)
class IdentityRequestAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "app_name", "team", "cluster", "namespace", "status"]
    list_filter = ["status", "kind", "team", "cluster"]
    search_fields = ["app_name", "namespace", "service_account"]
    list_select_related = ["team", "cluster"]
    inlines = [RequestedRoleInline, ApprovalInline]


class FederatedCredentialInline(ReadOnlyInline):
    model = FederatedCredential


class RoleAssignmentInline(ReadOnlyInline):
    model = RoleAssignment


@admin.register(Identity)
class IdentityAdmin(ReadOnlyAdmin):
    list_display = ["name", "team", "cluster", "status", "drift_state", "client_id"]
    list_filter = ["status", "drift_state", "team", "cluster"]
    search_fields = ["name", "client_id", "principal_id"]
    list_select_related = ["team", "cluster"]
    inlines = [FederatedCredentialInline, RoleAssignmentInline]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "actor_label", "action", "identity_request", "identity"]
    list_filter = ["action"]
    search_fields = ["action", "actor_label"]
    date_hierarchy = "created_at"
    list_select_related = ["identity_request", "identity"]
