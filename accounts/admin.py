"""The admin's user list, with each account's sign-in lockout and an action that lifts it.

A lockout (accounts.login_throttle) also locks out the real person when an attacker guesses at
their name; the security team lets them back in from here, or with `manage.py login_unlock`
(which also unlocks a client address). Both are audited as user.login_unlocked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.login_throttle import lockout_for, login_unlock
from accounts.machines import trust_rule_disable
from accounts.models import ServicePrincipal, TrustRule
from identities import roles
from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.errors import DomainError

User = get_user_model()


# What the admin's user form can change that grants or takes away power: audited.
_AUDITED_FLAGS = ("is_superuser", "is_staff", "is_active")


def _account_state(user: Any) -> dict[str, Any]:
    """The flags, groups and permissions of a saved user, read from the database."""
    if user.pk is None:
        return {"flags": {}, "groups": set(), "permissions": set(), "password": ""}
    stored = User.objects.get(pk=user.pk)
    return {
        "flags": {flag: getattr(stored, flag) for flag in _AUDITED_FLAGS},
        "groups": set(stored.groups.values_list("name", flat=True)),
        "permissions": {
            f"{app}.{codename}"
            for app, codename in stored.user_permissions.values_list(
                "content_type__app_label", "codename"
            )
        },
        "password": stored.password,
    }


class PortalUserAdmin(UserAdmin):
    """Django's user admin, audited: a role group added or removed is a user.role_granted /
    user.role_revoked row, as through `manage.py` or SSO; any other change of power (created,
    superuser, staff, active, other groups, permissions, a password set) is one
    user.account_changed row naming what changed (never the password itself)."""

    # The lockout right after the name: the admin list is narrow beside its nav and filters.
    list_display = ("username", "sign_in_lockout", "email", "first_name", "last_name", "is_staff")
    actions = ["lift_sign_in_lockout"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Read before the save; compared after the form's groups and permissions are saved too
        # (save_related), in the same transaction (the admin wraps the view in one).
        request._account_before = _account_state(obj)  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        before = getattr(request, "_account_before", None)
        if before is not None:
            _audit_account_change(request.user, form.instance, before, created=not change)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        user = self.get_object(request, id)
        before = _account_state(user) if user is not None else None
        response = super().user_change_password(request, id, form_url)
        if user is not None and before is not None:
            _audit_account_change(request.user, user, before, created=False)
        return response

    @admin.display(description="Sign-in")
    def sign_in_lockout(self, user: Any) -> str:
        lockout = lockout_for(None, user.get_username())
        if lockout is None:
            return "—"
        # Lockouts usually last minutes: the time alone, unless it ends on another day.
        same_day = lockout.until.date() == datetime.now(tz=UTC).date()
        return f"locked until {lockout.until:{'%H:%M' if same_day else '%Y-%m-%d %H:%M'}} UTC"

    @admin.action(
        description="Lift the sign-in lockout of the selected users", permissions=["change"]
    )
    def lift_sign_in_lockout(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        operator = request.user.get_username()
        unlocked = []
        for user in queryset.order_by("username"):
            was_locked = login_unlock(
                username=user.get_username(),
                by=f"{operator} (admin)",
                actor=request.user,
            )
            if was_locked:
                unlocked.append(user.get_username())
        if unlocked:
            self.message_user(
                request,
                f"Sign-in lockout lifted for {', '.join(unlocked)}.",
                level=messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                "None of the selected users was locked out; their failure counts were cleared.",
                level=messages.INFO,
            )


def _audit_account_change(actor: Any, user: Any, before: dict[str, Any], *, created: bool) -> None:
    after = _account_state(user)
    role_groups = set(roles.ROLE_GROUPS)
    username = user.get_username()
    for role in sorted((after["groups"] - before["groups"]) & role_groups):
        audit_record(
            actor=actor,
            action=AuditAction.USER_ROLE_GRANTED,
            data={"user": username, "user_id": user.pk, "role": role, "via": "admin"},
        )
    for role in sorted((before["groups"] - after["groups"]) & role_groups):
        audit_record(
            actor=actor,
            action=AuditAction.USER_ROLE_REVOKED,
            data={"user": username, "user_id": user.pk, "role": role, "via": "admin"},
        )
    changes: dict[str, Any] = {
        flag: [before["flags"].get(flag), value]
        for flag, value in after["flags"].items()
        if before["flags"].get(flag) != value
    }
    for key, label in (("groups", "groups"), ("permissions", "permissions")):
        added = sorted(after[key] - before[key] - (role_groups if key == "groups" else set()))
        removed = sorted(before[key] - after[key] - (role_groups if key == "groups" else set()))
        if added:
            changes[f"{label}_added"] = added
        if removed:
            changes[f"{label}_removed"] = removed
    if not created and before["password"] != after["password"]:
        changes["password_set"] = True  # that it changed, never the hash
    if created or changes:
        audit_record(
            actor=actor,
            action=AuditAction.USER_ACCOUNT_CHANGED,
            data={"user": username, "user_id": user.pk, "created": created, "changes": changes},
        )
    roles.forget_roles(user)


admin.site.unregister(User)
admin.site.register(User, PortalUserAdmin)


class _MachinesAdmin(admin.ModelAdmin):
    """Read-only: rules and principals are created on the pipelines page, the API or
    `manage.py trust_rule`, through the services that audit them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ServicePrincipal)
class ServicePrincipalAdmin(_MachinesAdmin):
    list_display = ("label", "team", "created_at", "created_by")
    list_filter = ("team",)
    search_fields = ("name", "team__name")


@admin.register(TrustRule)
class TrustRuleAdmin(_MachinesAdmin):
    list_display = (
        "name",
        "service_principal",
        "issuer",
        "audience",
        "subject",
        "subject_pattern",
        "last_used_at",
        "disabled_at",
    )
    list_filter = ("issuer", "service_principal__team")
    search_fields = ("name", "issuer", "subject", "subject_pattern")
    actions = ["disable_rules"]

    def has_disable_permission(self, request: HttpRequest) -> bool:
        return roles.is_admin(request.user)

    @admin.action(description="Disable the selected trust rules", permissions=["disable"])
    def disable_rules(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        disabled = []
        for rule in queryset.filter(disabled_at__isnull=True).order_by("id"):
            try:
                trust_rule_disable(rule=rule, actor=request.user)  # type: ignore[arg-type]
            except DomainError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
                return
            disabled.append(rule.name)
        if disabled:
            self.message_user(request, f"Disabled: {', '.join(disabled)}.", level=messages.SUCCESS)
        else:
            self.message_user(request, "None of them was enabled.", level=messages.INFO)
