"""The resource inventory: which subscriptions, resource groups and resources exist.

ARM refuses a role assignment on a scope that does not exist with 404, by level (AZURE-FACTS
§2.6, §8):

- ``SubscriptionNotFound``: ``The subscription '<id>' could not be found.`` (quoted from live
  ARM in several projects' fixtures and probe captures);
- ``ResourceGroupNotFound``: ``Resource group '<rg>' could not be found.``;
- ``ResourceNotFound``: ``The Resource '<ns>/<type>/<name>' under resource group '<rg>' was not
  found. For more details please go to https://aka.ms/ARMResourceNotFoundFix``.

Every entry has the shape of an Azure Resource Graph row (``resources`` and
``resourcecontainers`` tables): ``id, type, name, subscriptionId, resourceGroup, location,
tags``; subscriptions are ``microsoft.resources/subscriptions``, resource groups
``microsoft.resources/subscriptions/resourcegroups`` as Resource Graph types them. What exists:
what the control API registered, the subscriptions and resource groups those imply, the
user-assigned identities created through ARM, and the registered AKS clusters. A child scope
(``.../storageAccounts/sa/blobServices/default/containers/c``) exists when its top-level
resource does: children are not modelled.
"""

from __future__ import annotations

import re
from typing import Any

from azure_emulator import armcommon as arm
from azure_emulator.context import Context
from azure_emulator.protocol import ArmError

SUBSCRIPTION_TYPE = "microsoft.resources/subscriptions"
RESOURCE_GROUP_TYPE = "microsoft.resources/subscriptions/resourcegroups"

_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)"
    r"(?:/resourcegroups/(?P<rg>[^/]+)"
    r"(?:/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)(?P<child>(?:/[^/]+/[^/]+)*))?)?$",
    re.I,
)
_NOT_FOUND_FIX = "For more details please go to https://aka.ms/ARMResourceNotFoundFix"


class InventoryError(ValueError):
    """A registration the control API refuses; the message says why."""


def _parts(resource_id: str) -> re.Match[str] | None:
    return _ID.match(resource_id.rstrip("/"))


def entry(
    resource_id: str, *, location: str = "", tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """The inventory row for `resource_id` (a subscription, resource group or resource)."""
    m = _parts(resource_id)
    if m is None or m["child"]:
        raise InventoryError(
            f"{resource_id!r} is not /subscriptions/{{id}}[/resourceGroups/{{rg}}"
            "[/providers/{namespace}/{type}/{name}]]"
        )
    arm.check_subscription(m["sub"])
    if tags is not None and (
        not isinstance(tags, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise InventoryError("tags must map strings to strings")
    if m["name"]:
        kind, name = f"{m['ns']}/{m['type']}", m["name"]
        canonical = f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}/providers/{kind}/{name}"
    elif m["rg"]:
        kind, name = RESOURCE_GROUP_TYPE, m["rg"]
        canonical = f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}"
    else:
        kind, name = SUBSCRIPTION_TYPE, m["sub"]
        canonical = f"/subscriptions/{m['sub']}"
    return {
        "id": canonical,
        "type": kind,
        "name": name,
        "subscriptionId": m["sub"].lower(),
        "resourceGroup": m["rg"],
        "location": location,
        "tags": dict(tags or {}),
    }


def register(ctx: Context, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add (or replace) rows, with the subscription and resource group each one implies."""
    added: list[dict[str, Any]] = []
    with ctx.store.mutation() as data:
        inventory: dict[str, dict[str, Any]] = data["inventory"]
        for row in rows:
            containers = [f"/subscriptions/{row['subscriptionId']}"]
            if row["resourceGroup"]:
                containers.append(
                    f"/subscriptions/{row['subscriptionId']}/resourceGroups/{row['resourceGroup']}"
                )
            for container in containers:
                if container.lower() != row["id"].lower():
                    inventory.setdefault(
                        container.lower(), entry(container, location=row["location"])
                    )
            inventory[row["id"].lower()] = row
            added.append(row)
            # Registering a resource group again (or anything in it) makes it exist again.
            group = f"/subscriptions/{row['subscriptionId']}/resourcegroups/{row['resourceGroup']}"
            ctx.store.deleted_groups.discard(group.lower())
        ctx.store.inventory_version += 1
    return added


def _implied(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows that exist without registration: identities made through ARM, AKS clusters,
    and the subscriptions and resource groups holding them."""
    implied: list[tuple[str, str, dict[str, str]]] = [
        (identity["id"], identity.get("location", ""), dict(identity.get("tags") or {}))
        for identity in data["identities"].values()
    ]
    implied += [
        (
            f"/subscriptions/{cluster['subscription_id']}/resourceGroups/"
            f"{cluster['resource_group']}/providers/Microsoft.ContainerService/"
            f"managedClusters/{cluster['name']}",
            str(cluster.get("location", "")),
            {},
        )
        for cluster in data["clusters"].values()
    ]
    found: list[dict[str, Any]] = []
    for resource_id, location, tags in implied:
        row = entry(resource_id, location=location, tags=tags)
        for key in (
            f"/subscriptions/{row['subscriptionId']}",
            f"/subscriptions/{row['subscriptionId']}/resourceGroups/{row['resourceGroup']}",
        ):
            found.append(entry(key, location=location))
        found.append(row)
    return found


def rows(ctx: Context) -> list[dict[str, Any]]:
    """Everything that exists: registered rows, identities made through ARM, AKS clusters."""
    with ctx.store.lock:
        data = ctx.store.data
        found = {key: dict(row) for key, row in data["inventory"].items()}
        implied = _implied(data)
    for row in implied:
        found.setdefault(row["id"].lower(), row)
    return sorted(found.values(), key=lambda row: row["id"].lower())


class Index:
    """The registered rows by lower-cased id, subscription, resource group name and tag
    (key, lower-cased value), so a Resource Graph query over 100,000 rows reads only the rows its
    conditions can match (resourcegraph.py plans with it). Rebuilt when the inventory changes."""

    def __init__(self, registered: dict[str, dict[str, Any]]) -> None:
        self.by_id = registered
        self.by_subscription: dict[str, set[str]] = {}
        self.by_group: dict[str, set[str]] = {}
        self.by_tag: dict[tuple[str, str], set[str]] = {}
        for key, row in registered.items():
            self.by_subscription.setdefault(row["subscriptionId"].lower(), set()).add(key)
            if row["resourceGroup"]:
                self.by_group.setdefault(row["resourceGroup"].lower(), set()).add(key)
            for tag, value in (row.get("tags") or {}).items():
                self.by_tag.setdefault((tag, str(value).lower()), set()).add(key)


def index(ctx: Context) -> tuple[Index, list[dict[str, Any]]]:
    """The registered rows' index, and the implied rows not registered (few: scan them)."""
    with ctx.store.lock:
        data = ctx.store.data
        registered: dict[str, dict[str, Any]] = data["inventory"]
        version = (id(registered), len(registered), ctx.store.inventory_version)
        cached = ctx.store.inventory_index
        if cached is None or cached[0] != version:
            cached = (version, Index(registered))
            ctx.store.inventory_index = cached
        built: Index = cached[1]
        extra: dict[str, dict[str, Any]] = {}
        for row in _implied(data):
            key = row["id"].lower()
            if key not in registered:
                extra.setdefault(key, row)
    return built, list(extra.values())


def _existing(ctx: Context, wanted: list[str]) -> set[str]:
    """Which of the lower-cased ids in `wanted` exist (what `rows` would list): registered ones
    by key; the implied rows are built only when one is not registered. Each role assignment PUT
    asks, so it must not copy and sort the whole inventory as `rows` does."""
    with ctx.store.lock:
        data = ctx.store.data
        registered: dict[str, dict[str, Any]] = data["inventory"]
        found = {key for key in wanted if key in registered}
        if len(found) < len(wanted):
            implied = {row["id"].lower() for row in _implied(data)}
            found |= {key for key in wanted if key in implied}
    return found


def _at_or_under(resource_id: str, container: str) -> bool:
    resource_id, container = resource_id.lower().rstrip("/"), container.lower().rstrip("/")
    return resource_id == container or resource_id.startswith(container + "/")


def delete_group(ctx: Context, group_id: str) -> dict[str, int]:
    """A resource group deleted outside the portal (by hand, by another tool): ARM deletes what
    it holds, so its identities (with their credentials) and the role assignments at or under
    it go, with its registered rows; then every request under it is answered 404
    (`check_group_exists`) until it is registered again. AKS clusters in it are not modelled
    (they stay). Returns what went, by kind."""
    m = _parts(group_id)
    if m is None or not m["rg"] or m["name"]:
        raise InventoryError(f"{group_id!r} is not /subscriptions/{{id}}/resourceGroups/{{rg}}")
    group = f"/subscriptions/{m['sub']}/resourcegroups/{m['rg']}".lower()
    with ctx.store.mutation() as data:
        identities = [key for key in data["identities"] if _at_or_under(key, group)]
        for key in identities:
            del data["identities"][key]
            data["fics"].pop(key, None)
        assignments = [
            key
            for key, record in data["role_assignments"].items()
            if _at_or_under(record["scope"], group)
        ]
        for key in assignments:
            del data["role_assignments"][key]
        rows = [key for key in data["inventory"] if _at_or_under(key, group)]
        for key in rows:
            del data["inventory"][key]
        ctx.store.inventory_version += 1
        ctx.store.deleted_groups.add(group)
    return {"identities": len(identities), "role_assignments": len(assignments), "rows": len(rows)}


def check_group_exists(ctx: Context, scope: str) -> None:
    """404 ``ResourceGroupNotFound`` for any request at or under a resource group deleted out
    of band, whatever its method. Azure/azure-resource-manager-rpc v1.0/resource-api-reference.md
    (Delete Resource): "If the resource group does not exist, 404 (NotFound) will be returned by
    the proxy layer and will not reach the resource provider"; the code and message are the
    ones ARM gives a role assignment on a missing resource group (AZURE-FACTS §2.6)."""
    if not ctx.store.deleted_groups:
        return
    m = _parts(scope)
    if m is None or not m["rg"]:
        return
    group = f"/subscriptions/{m['sub']}/resourcegroups/{m['rg']}".lower()
    if group in ctx.store.deleted_groups:
        raise ArmError(
            404, "ResourceGroupNotFound", f"Resource group '{m['rg']}' could not be found."
        )


def check_scope_exists(ctx: Context, scope: str) -> None:
    """ARM's 404 for a role assignment on a scope that does not exist (by level)."""
    m = _parts(scope)
    if m is None:
        return  # the tenant root and management groups: not modelled
    check_group_exists(ctx, scope)
    sub, rg, name = m["sub"], m["rg"], m["name"]
    sub_key = f"/subscriptions/{sub}".lower()
    rg_key = f"{sub_key}/resourcegroups/{rg}".lower()
    top_key = f"{rg_key}/providers/{m['ns']}/{m['type']}/{name}".lower()
    known = _existing(ctx, [sub_key] + ([rg_key] if rg else []) + ([top_key] if name else []))
    if sub_key not in known:
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
    if not rg:
        return
    if rg_key not in known:
        raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
    if not name:
        return
    if top_key not in known:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{m['ns']}/{m['type']}/{name}' under resource group '{rg}' "
            f"was not found. {_NOT_FOUND_FIX}",
        )
