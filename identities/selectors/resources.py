"""The resources a team may grant roles on, from Azure (the request form's picker and
GET /api/v1/resources/): its resource groups, what is in them, and what is tagged for it.

Visibility: a requester sees the resources of their own teams; approvers and admins may name
any team. The Azure side is one paged Resource Graph query per team, cached
(identities.scope_lookup), so the database work is constant in the number of resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from identities import scope_lookup
from identities.errors import NotFoundError
from identities.memo import BuiltCache
from identities.models import CatalogRole, Cluster, ResourceGroupOwnership, Team
from identities.selectors.people import may_act_for_team, teams_of

OWNED_BY_RESOURCE_GROUP = "resource_group"
OWNED_BY_TAG = "tag"


@dataclass(frozen=True)
class TeamResource:
    """A resource group or resource a team owns, and by which rule."""

    id: str
    name: str
    type: str
    subscription_id: str
    resource_group: str
    location: str
    team: str
    owned_by: str  # OWNED_BY_RESOURCE_GROUP or OWNED_BY_TAG


def resources_for(
    user: Any,
    *,
    team: str = "",
    q: str = "",
    resource_type: str = "",
    subscription: str = "",
    role: str = "",
) -> list[TeamResource]:
    """What `user`'s teams (or the named `team`, if `user` may act for it) own in Azure, in the
    subscriptions clusters may grant roles in, filtered (`q`: part of the name or id; `type`
    and `subscription`: exact, any case; `role`: a catalog role, by name or GUID, keeps the
    resources of the types it is meant for, as the policy judges them) and ordered by
    subscription, group, type and name.
    NotFoundError for a team (or role) that does not exist or is not the user's to see;
    ScopeLookupUnavailable when Azure cannot be asked."""
    fits: tuple[str, ...] | None = None
    if role:
        catalog_role = (
            CatalogRole.objects.filter(name__iexact=role).first()
            or CatalogRole.objects.filter(role_definition_guid__iexact=role).first()
        )
        if catalog_role is None:
            raise NotFoundError(f"Role {role!r} is not in the role catalog.")
        fits = tuple(t.lower() for t in catalog_role.resource_types or ())
    if team:
        chosen = Team.objects.filter(name=team).first()
        if chosen is None or not may_act_for_team(user, chosen):
            raise NotFoundError(f"Team {team!r} was not found.")
        teams = [chosen]
    else:
        teams = list(teams_of(user).order_by("name"))
    if not teams:
        return []
    subscriptions = sorted(
        {
            subscription_id.lower()
            for allowed in Cluster.objects.values_list("allowed_scope_subscriptions", flat=True)
            for subscription_id in allowed or ()
        }
    )
    groups_by_team: dict[int, list[tuple[str, str]]] = {t.pk: [] for t in teams}
    for team_id, sub, group in ResourceGroupOwnership.objects.filter(team__in=teams).values_list(
        "team_id", "subscription_id", "resource_group"
    ):
        groups_by_team[team_id].append((sub.lower(), group))
    sources = tuple(
        (
            owner.name,
            tuple(sorted(groups_by_team[owner.pk])),
            scope_lookup.team_resources(
                groups=groups_by_team[owner.pk], team=owner.name, subscriptions=subscriptions
            ),
        )
        for owner in teams
    )
    needle, kind, sub_wanted = q.strip().lower(), resource_type.lower(), subscription.lower()
    return [
        resource
        for text, resource in _built_list(sources, fits)
        if (not needle or needle in text)
        and (not kind or resource.type.lower() == kind)
        and (not sub_wanted or resource.subscription_id == sub_wanted)
    ]


# The built, sorted list of (search text, resource) per (teams, role types), kept in this
# process while the rows it was built from are the ones the lookup returns (it returns the same
# object while the Django cache holds the answer): a type-ahead call filters it, instead of
# building thousands of rows on every keystroke.
_Source = tuple[str, tuple[tuple[str, str], ...], Sequence[scope_lookup.AzureResource]]
_BUILT_ENTRIES = 64
_built: BuiltCache[list[tuple[str, TeamResource]]] = BuiltCache(_BUILT_ENTRIES)


def _built_list(
    sources: tuple[_Source, ...], fits: tuple[str, ...] | None
) -> list[tuple[str, TeamResource]]:
    key = (tuple((name, groups) for name, groups, _ in sources), fits)
    built = _built.get(
        key,
        lambda kept: all(k[2] is rows[2] for k, rows in zip(kept, sources, strict=True)),
    )
    if built is not None:
        return built
    found: dict[str, TeamResource] = {}
    for owner, groups, rows in sources:
        owned = {(sub, group.lower()) for sub, group in groups}
        for row in rows:
            in_group = (row.subscription_id, row.resource_group.lower()) in owned
            found.setdefault(
                row.id.lower(),
                TeamResource(
                    id=row.id,
                    name=row.name,
                    type=row.type,
                    subscription_id=row.subscription_id,
                    resource_group=row.resource_group,
                    location=row.location,
                    team=owner,
                    owned_by=OWNED_BY_RESOURCE_GROUP if in_group else OWNED_BY_TAG,
                ),
            )
    ordered = sorted(
        (r for r in found.values() if fits is None or _fits(r.type, fits)),
        key=lambda r: (
            r.subscription_id,
            r.resource_group.lower(),
            r.type.lower() != "microsoft.resources/subscriptions/resourcegroups",
            r.type.lower(),
            r.name.lower(),
        ),
    )
    return _built.put(key, sources, [(f"{r.name}\n{r.id}".lower(), r) for r in ordered])


def _fits(resource_type: str, role_types: tuple[str, ...]) -> bool:
    """A role meant for no type in particular fits any resource (not a resource group: that is a
    broad scope); otherwise the resource's type, or one it is a child of, must be listed."""
    kind = resource_type.lower()
    if kind == "microsoft.resources/subscriptions/resourcegroups":
        return False
    return not role_types or any(kind == t or kind.startswith(t + "/") for t in role_types)
