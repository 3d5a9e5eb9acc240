"""The one scope type: an ARM scope parsed once, with one spelling, used by the form, the API,
the policy, the engine, the hand-over and drift.

`parse_scope()` refuses anything that would mean something else to Azure than to the approver
(`validators.scope_problem`: dot segments, percent-encoding, `?`, `#`, whitespace, control
characters, length), then reads the id with azure-mgmt-core's own grammar
(`azure.mgmt.core.tools.is_valid_resource_id` / `parse_resource_id`) and writes it back with
`resource_id()`, which spells the fixed segments `subscriptions`, `resourceGroups` and
`providers` as ARM documents them (and `validators.canonical_arm_id` the provider namespaces and
types the portal knows, e.g. `Microsoft.KeyVault/vaults`). Names keep the case they were given
(ARM compares them case-insensitively); the subscription id is lower-case, as ARM returns it.
One scope therefore has one string in the database, in the uuid5 role assignment name and in
the Terraform ids.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from azure.mgmt.core.tools import is_valid_resource_id, parse_resource_id, resource_id

from identities.validators import (
    SCOPE_RESOURCE,
    SCOPE_RESOURCE_GROUP,
    SCOPE_SUBSCRIPTION,
    canonical_arm_id,
    is_guid,
    is_resource_group_name,
    scope_problem,
)

# ARM resource provider namespaces are dotted ASCII words (Microsoft.KeyVault, Contoso.Widgets).
_PROVIDER_NAMESPACE = re.compile(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+")
_MAX_CHILD_LEVELS = 8


class ScopeError(ValueError):
    """Why a string is not a scope the portal can grant on: `rule` is the stable name (the API's
    `rule`), `explanation` finishes the sentence "Scope '…' …"."""

    def __init__(self, rule: str, explanation: str) -> None:
        super().__init__(explanation)
        self.rule = rule
        self.explanation = explanation


@dataclass(frozen=True)
class Scope:
    """A parsed ARM scope inside a subscription: a subscription, a resource group, or one
    resource (with child resources: `types`/`names` carry one entry per level)."""

    subscription_id: str
    resource_group: str | None = None
    namespace: str | None = None
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def level(self) -> str:
        if self.namespace is not None:
            return SCOPE_RESOURCE
        return SCOPE_RESOURCE_GROUP if self.resource_group is not None else SCOPE_SUBSCRIPTION

    @property
    def resource_type(self) -> str | None:
        """`Microsoft.Storage/storageAccounts/blobServices/containers`, or None above a resource."""
        if self.namespace is None:
            return None
        return "/".join([self.namespace, *self.types])

    @property
    def name(self) -> str | None:
        return self.names[-1] if self.names else None

    @functools.cached_property
    def id(self) -> str:
        """The canonical string: what is stored, named, sent to Azure and shown (worked out once
        per instance: the fields never change)."""
        parts: dict[str, str] = {"subscription": self.subscription_id}
        if self.resource_group is not None:
            parts["resource_group"] = self.resource_group
        if self.namespace is not None:
            parts.update(namespace=self.namespace, type=self.types[0], name=self.names[0])
            for level, (child_type, child_name) in enumerate(
                zip(self.types[1:], self.names[1:], strict=True), start=1
            ):
                parts[f"child_type_{level}"] = child_type
                parts[f"child_name_{level}"] = child_name
        # resource_id() spells the fixed segments; canonical_arm_id the namespaces and types
        # the portal knows (Microsoft.KeyVault/vaults), as Terraform's parsers expect them.
        return canonical_arm_id(resource_id(**parts))

    @property
    def resource_group_id(self) -> str | None:
        if self.resource_group is None:
            return None
        return resource_id(subscription=self.subscription_id, resource_group=self.resource_group)

    @property
    def existence_id(self) -> str:
        """What Azure Resource Graph can be asked about: the subscription, the resource group, or
        the top-level resource (child resources are not rows of their own there)."""
        if self.namespace is None:
            return self.resource_group_id or resource_id(subscription=self.subscription_id)
        return Scope(
            self.subscription_id,
            self.resource_group,
            self.namespace,
            self.types[:1],
            self.names[:1],
        ).id

    def key(self) -> str:
        """For comparisons: ARM compares ids case-insensitively."""
        return self.id.lower()

    def is_within(self, other: Scope) -> bool:
        """This scope is `other` or lies below it."""
        mine, theirs = self.key(), other.key()
        return mine == theirs or mine.startswith(theirs + "/")

    def __str__(self) -> str:
        return self.id


# Pure and immutable in, immutable out: one approval of k roles parses each scope several times
# (the policy, the desired state, the engine), and the portal works with a few hundred scopes.
# A refused string is not kept (lru_cache keeps results, not exceptions).
@functools.lru_cache(maxsize=4096)
def parse_scope(value: str) -> Scope:
    """The scope `value` names, or ScopeError naming the rule it breaks."""
    if not value:
        raise ScopeError("required", "is required")
    problem = scope_problem(value)
    if problem is not None:
        raise ScopeError(*problem)
    if not value.isascii():
        # Resource group names may hold Unicode letters, but a look-alike letter (a Cyrillic
        # one for a Latin one) names another resource that reads the same to the approver.
        raise ScopeError(
            "scope_non_ascii",
            "contains a non-ASCII character (refused: look-alike letters name other resources)",
        )
    malformed = ScopeError(
        "malformed_scope",
        "is not a well-formed ARM resource id "
        "(/subscriptions/{id}/resourceGroups/{group}/providers/{namespace}/{type}/{name})",
    )
    if not value.startswith("/") or value.endswith("/") or "//" in value:
        raise malformed
    if not is_valid_resource_id(value):
        raise malformed
    parts = parse_resource_id(value)
    subscription = str(parts.get("subscription", ""))
    if not is_guid(subscription):
        raise malformed
    group = parts.get("resource_group")
    if group is not None and not is_resource_group_name(str(group)):
        raise malformed
    if "namespace" not in parts:
        return Scope(subscription.lower(), str(group) if group is not None else None)
    if group is None:
        # A resource id always names its resource group (subscription-level providers are not
        # something the portal grants on).
        raise malformed
    levels = int(parts.get("last_child_num") or 0)
    if levels > _MAX_CHILD_LEVELS or any(
        f"child_namespace_{level}" in parts for level in range(1, levels + 1)
    ):
        # Extension resources (…/providers/Microsoft.Authorization/locks/x under a resource)
        # are not grantable resource scopes.
        raise malformed
    if _PROVIDER_NAMESPACE.fullmatch(str(parts["namespace"])) is None:
        raise malformed
    types = (str(parts["type"]), *(str(parts[f"child_type_{n}"]) for n in range(1, levels + 1)))
    names = (str(parts["name"]), *(str(parts[f"child_name_{n}"]) for n in range(1, levels + 1)))
    if not all(types) or not all(names):
        raise malformed
    return Scope(subscription.lower(), str(group), str(parts["namespace"]), types, names)


def canonical_scope(value: str) -> str:
    """`value` in its one spelling (ScopeError when it is not a scope)."""
    return parse_scope(value).id


# The Azure portals of the public and sovereign clouds (Learn: "Azure Government developer
# guide" / "Azure China 21Vianet developer guide" list portal.azure.us and portal.azure.cn).
PORTAL_HOSTS = frozenset({"portal.azure.com", "portal.azure.us", "portal.azure.cn"})
_PORTAL_RESOURCE = re.compile(r"^(?:@[^/]*/)?resource(?P<id>/subscriptions/.*)$", re.IGNORECASE)
_NOT_A_RESOURCE_URL = ScopeError(
    "not_a_resource_url",
    "is not the URL of a resource in the Azure portal (open the resource there and copy the "
    "address: https://portal.azure.com/#@<tenant>/resource/subscriptions/…/overview)",
)


def scope_from_portal_url(value: str) -> Scope:
    """The scope an Azure portal resource URL shows (`https://portal.azure.com/#@tenant/resource
    /subscriptions/…/providers/…/<name>/overview`); the blade after the id (`overview`,
    `containersList`, …) is dropped. ScopeError when it is not such a URL, or the id in it is
    not a scope (`parse_scope`'s rules)."""
    split = urlsplit(value.strip())
    if split.scheme != "https" or (split.hostname or "").lower() not in PORTAL_HOSTS:
        raise _NOT_A_RESOURCE_URL
    match = _PORTAL_RESOURCE.match(split.fragment)
    if match is None:
        raise _NOT_A_RESOURCE_URL
    path = match["id"].rstrip("/")
    try:
        return parse_scope(path)
    except ScopeError as error:
        if error.rule != "malformed_scope" or path.count("/") < 3:
            raise
    # One blade segment after the id: …/vaults/kv1/overview, …/resourceGroups/rg/overview.
    return parse_scope(path.rsplit("/", 1)[0])


def looks_like_url(value: str) -> bool:
    return value.strip().lower().startswith(("https://", "http://"))
