"""Who is on which team, which namespaces and clusters they may use, the role catalog."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from identities import roles
from identities.models import (
    CatalogRole,
    Cluster,
    NamespaceOwnership,
    Team,
)

# --- people and teams ----------------------------------------------------------------------


def teams_of(user: Any) -> QuerySet[Team]:
    """The teams `user` is a member of."""
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user)


def is_team_member(user: Any, team: Team | int) -> bool:
    team_id = team if isinstance(team, int) else team.pk
    return bool(getattr(user, "is_authenticated", False)) and (
        Team.objects.filter(pk=team_id, memberships__user=user).exists()
    )


# Every service principal's user is named `svc:<team>/<name>` (accounts.ServicePrincipal.label,
# the only way one is made), and a person's username cannot hold a ':' (Django's username
# validator; Entra's UPNs and e-mail addresses neither). So a name without the prefix is a
# person, known without reading accounts' table.
SERVICE_PRINCIPAL_PREFIX = "svc:"


def is_service_principal(user: Any) -> bool:
    """`user` is a team's service principal (a pipeline), not a person (accounts' reverse
    accessor: the domain does not import `accounts`)."""
    return getattr(user, "service_principal", None) is not None


def stands_behind(user: Any, requester: Any) -> bool:
    """`user` is the requester, or a person behind a requester that is a team's service
    principal (a pipeline): a member of its team, or whoever created it or one of its
    credentials (a service token, a trust rule). Four-eyes counts them all as the requester:
    a person must not approve what their own pipeline filed. (Read through the user's reverse
    accessors: the domain does not import `accounts`.)"""
    if user.pk == requester.pk:
        return True
    if not requester.get_username().startswith(SERVICE_PRINCIPAL_PREFIX):
        return False  # a person: no query on the approval's path (see the constant)
    principal = getattr(requester, "service_principal", None)  # accounts.ServicePrincipal
    if principal is None:
        return False
    return (
        principal.created_by_id == user.pk
        or is_team_member(user, principal.team_id)
        or principal.trust_rules.filter(created_by=user).exists()
        or requester.api_tokens.filter(created_by=user).exists()
    )


def may_act_for_team(user: Any, team: Team | int) -> bool:
    """Who may retry, verify or repair a team's requests and identities: the team's members,
    approvers and admins (the one definition the services and the pages share)."""
    return roles.is_approver(user) or roles.is_admin(user) or is_team_member(user, team)


def namespaces_owned_by(user: Any, cluster: Cluster) -> list[str]:
    """Namespaces on `cluster` owned by any of `user`'s teams (what the request form offers)."""
    return list(
        NamespaceOwnership.objects.filter(cluster=cluster, team__in=teams_of(user))
        .order_by("namespace")
        .values_list("namespace", flat=True)
    )


def clusters_for(user: Any) -> QuerySet[Cluster]:
    """Clusters on which one of `user`'s teams owns a namespace (everything for see-all roles)."""
    if roles.sees_everything(user):
        return Cluster.objects.all()
    return Cluster.objects.filter(namespaces__team__in=teams_of(user)).distinct()


def catalog_roles() -> QuerySet[CatalogRole]:
    return CatalogRole.objects.order_by("privileged", "name")
