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
from identities.errors import DomainError

User = get_user_model()


class PortalUserAdmin(UserAdmin):
    # The lockout right after the name: the admin list is narrow beside its nav and filters.
    list_display = ("username", "sign_in_lockout", "email", "first_name", "last_name", "is_staff")
    actions = ["lift_sign_in_lockout"]

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
