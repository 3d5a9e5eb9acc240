"""Writes for what admins configure: teams and members, roles, clusters, namespace ownership and
the role catalog. The Django admin and seed_demo go through these so each change is audited."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models, transaction

from identities import roles
from identities.audit import audit_record
from identities.audit.actions import CONFIG_ACTIONS, AuditAction
from identities.errors import DomainError
from identities.models import (
    CatalogRole,
    Cluster,
    NamespaceOwnership,
    ResourceGroupOwnership,
    Team,
    TeamMembership,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

M = TypeVar("M", bound=models.Model)

CONFIG_MODELS: tuple[type[models.Model], ...] = (
    Team,
    TeamMembership,
    Cluster,
    NamespaceOwnership,
    ResourceGroupOwnership,
    CatalogRole,
)


def _snapshot(instance: models.Model | None) -> dict[str, Any] | None:
    if instance is None:
        return None
    return {
        field.attname: field.value_from_object(instance) for field in instance._meta.concrete_fields
    }


def _clean(instance: models.Model) -> None:
    try:
        instance.full_clean()
    except ValidationError as exc:
        messages = [
            f"{name}: {message}" if name != "__all__" else message
            for name, errors in exc.message_dict.items()
            for message in errors
        ]
        raise DomainError("; ".join(messages)) from exc


@transaction.atomic
def config_object_save(*, actor: User | None, instance: M) -> M:
    """Validate and save a team, membership, cluster, namespace ownership or catalog role, and
    audit it with its before and after values."""
    model = type(instance)
    if model not in CONFIG_MODELS:
        raise DomainError(f"{model.__name__} is not configured through config_object_save.")
    before = None
    if instance.pk is not None:
        before = _snapshot(model._default_manager.filter(pk=instance.pk).first())
    _clean(instance)
    instance.save()
    after = _snapshot(instance)
    if before == after:
        return instance
    audit_record(
        actor=actor,
        action=CONFIG_ACTIONS[str(model._meta.model_name), "updated" if before else "created"],
        data={"object": str(instance), "id": instance.pk, "before": before, "after": after},
    )
    return instance


@transaction.atomic
def config_object_delete(*, actor: User | None, instance: models.Model) -> None:
    """Delete a configuration object (PROTECT keeps anything still referenced) and audit it."""
    model = type(instance)
    if model not in CONFIG_MODELS:
        raise DomainError(f"{model.__name__} is not configured through config_object_delete.")
    before, label, pk = _snapshot(instance), str(instance), instance.pk
    try:
        instance.delete()
    except models.ProtectedError as exc:
        raise DomainError(f"{label} is still in use and cannot be deleted.") from exc
    audit_record(
        actor=actor,
        action=CONFIG_ACTIONS[str(model._meta.model_name), "deleted"],
        data={"object": label, "id": pk, "before": before},
    )


def team_member_add(*, actor: User | None, team: Team, user: User) -> TeamMembership:
    """Put `user` on `team` (idempotent)."""
    existing = TeamMembership.objects.filter(team=team, user=user).first()
    if existing is not None:
        return existing
    membership = TeamMembership(team=team, user=user)
    config_object_save(actor=actor, instance=membership)
    return membership


def namespace_grant(
    *, actor: User | None, cluster: Cluster, namespace: str, team: Team
) -> NamespaceOwnership:
    """Give `team` the namespace on `cluster` (idempotent; refuses platform namespaces and a
    namespace another team owns)."""
    existing = NamespaceOwnership.objects.filter(cluster=cluster, namespace=namespace).first()
    if existing is not None:
        if existing.team_id != team.pk:
            raise DomainError(
                f"Namespace {namespace!r} on {cluster.name!r} belongs to team {existing.team}."
            )
        return existing
    ownership = NamespaceOwnership(cluster=cluster, namespace=namespace, team=team)
    config_object_save(actor=actor, instance=ownership)
    return ownership


@transaction.atomic
def user_role_grant(*, actor: User | None, user: User, role: str) -> None:
    """Add `user` to one of the portal's role groups (idempotent)."""
    if role not in roles.ROLE_GROUPS:
        raise DomainError(f"Unknown role {role!r}; roles are {', '.join(roles.ROLE_GROUPS)}.")
    group = Group.objects.get(name=role)
    if user.groups.filter(pk=group.pk).exists():
        return
    user.groups.add(group)
    roles.forget_roles(user)
    audit_record(
        actor=actor,
        action=AuditAction.USER_ROLE_GRANTED,
        data={"user": user.get_username(), "user_id": user.pk, "role": role},
    )


@transaction.atomic
def user_role_revoke(*, actor: User | None, user: User, role: str) -> None:
    """Remove `user` from a portal role group (idempotent)."""
    group = Group.objects.filter(name=role).first()
    if group is None or not user.groups.filter(pk=group.pk).exists():
        return
    user.groups.remove(group)
    roles.forget_roles(user)
    audit_record(
        actor=actor,
        action=AuditAction.USER_ROLE_REVOKED,
        data={"user": user.get_username(), "user_id": user.pk, "role": role},
    )


def team_member_remove(*, actor: User | None, team: Team, user: User) -> None:
    """Take `user` off `team` (idempotent; audited)."""
    membership = TeamMembership.objects.filter(team=team, user=user).first()
    if membership is not None:
        config_object_delete(actor=actor, instance=membership)


@transaction.atomic
def user_directory_sync(
    *,
    user: User,
    roles_wanted: set[str],
    teams_wanted: set[str],
    managed_roles: set[str],
    managed_teams: set[str],
    source: dict[str, Any],
) -> dict[str, list[str]]:
    """Make `user`'s portal roles and teams match a directory (single sign-on) for the roles and
    teams the directory manages; roles and teams outside `managed_*` are left as they are.

    Each grant and removal is audited by its own service, plus one `user.directory_synced` row
    with `source` (e.g. the issuer and the group ids that matched). Teams that do not exist are
    reported under "unknown_teams" and skipped. Returns what changed.
    """
    current_roles = set(user.groups.filter(name__in=managed_roles).values_list("name", flat=True))
    current_teams = set(
        Team.objects.filter(name__in=managed_teams, memberships__user=user).values_list(
            "name", flat=True
        )
    )
    teams = {team.name: team for team in Team.objects.filter(name__in=managed_teams)}
    changes: dict[str, list[str]] = {
        "roles_granted": sorted(roles_wanted - current_roles),
        "roles_revoked": sorted((current_roles - roles_wanted) & managed_roles),
        "teams_joined": sorted((teams_wanted - current_teams) & teams.keys()),
        "teams_left": sorted((current_teams - teams_wanted) & managed_teams),
        "unknown_teams": sorted(teams_wanted - teams.keys()),
    }
    for role in changes["roles_granted"]:
        user_role_grant(actor=None, user=user, role=role)
    for role in changes["roles_revoked"]:
        user_role_revoke(actor=None, user=user, role=role)
    for name in changes["teams_joined"]:
        team_member_add(actor=None, team=teams[name], user=user)
    for name in changes["teams_left"]:
        team_member_remove(actor=None, team=teams[name], user=user)
    audit_record(
        actor=user,
        action=AuditAction.USER_DIRECTORY_SYNCED,
        data={"user": user.get_username(), "user_id": user.pk, **changes, **source},
    )
    return changes
