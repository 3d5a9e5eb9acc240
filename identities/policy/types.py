"""The policy's vocabulary: drafts, findings, and the facts the checks are given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

KIND_NEW = "new"
KIND_ADD_SERVICE_ACCOUNT = "add_service_account"
KIND_DECOMMISSION = "decommission"
KIND_CHANGE_ROLES = "change_roles"
KINDS = (KIND_NEW, KIND_ADD_SERVICE_ACCOUNT, KIND_DECOMMISSION, KIND_CHANGE_ROLES)


@dataclass(frozen=True)
class Violation:
    """One finding: `field` is a path into the draft ("roles[1].scope", "tags.costCentre")."""

    field: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class PolicyResult:
    """Blocking violations and non-blocking warnings, in the order the checks found them."""

    violations: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)
    # Teams (other than the requesting one) that own a scope asked for: each must approve too.
    owner_teams: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def for_field(self, name: str) -> list[Violation]:
        return [v for v in [*self.violations, *self.warnings] if v.field == name]

    def as_dict(self) -> dict[str, list[dict[str, str]]]:
        return {
            "violations": [v.as_dict() for v in self.violations],
            "warnings": [w.as_dict() for w in self.warnings],
        }


@dataclass(frozen=True)
class RoleDraft:
    """A requested role: `role` is a catalog role name or role definition GUID; `expires_at`
    its end (time-bound access; None = until removed)."""

    role: str
    scope: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class RequestDraft:
    """A request as typed, before anything is saved. Team and cluster are named by their names;
    `identity_id` is the target identity for add_service_account, decommission and
    change_roles. For change_roles, `roles` are the roles to add and `remove` those to take
    away (a scope change is one of each)."""

    kind: str = KIND_NEW
    team: str = ""
    cluster: str = ""
    namespace: str = ""
    service_account: str = ""
    app_name: str = ""
    roles: Sequence[RoleDraft] = ()
    tags: Mapping[str, Any] = field(default_factory=dict)
    justification: str = ""
    is_exception: bool = False
    identity_id: int | None = None
    remove: Sequence[RoleDraft] = ()
    # change_roles: roles the identity holds, kept with a new end date (a renewal).
    renew: Sequence[RoleDraft] = ()
    # A new identity's own end: decommissioned then (time-bound access).
    identity_expires_at: datetime | None = None


@dataclass(frozen=True)
class ClusterFacts:
    name: str
    subscription_id: str
    resource_group: str
    oidc_issuer_url: str
    workload_identity_enabled: bool
    allowed_scope_subscriptions: frozenset[str]  # lower-cased


@dataclass(frozen=True)
class RoleFacts:
    name: str
    guid: str
    resource_types: tuple[str, ...]
    privileged: bool
    can_assign_roles: bool


@dataclass(frozen=True)
class IdentityFacts:
    id: int
    name: str
    team: str
    status: str
    live_fic_count: int
    decommission_open: bool  # another decommission request is open for it
    # Its live role assignments: (role definition GUID, scope), both lower-cased.
    roles: frozenset[tuple[str, str]] = frozenset()
    # Another change request open on it (pending, sent back, approved, provisioning or failed)
    # and its status.
    open_change_request_id: int | None = None
    open_change_status: str = ""


@dataclass(frozen=True)
class PolicyContext:
    """What the checks need to know about the world, looked up by a selector."""

    team_exists: bool = False
    cluster: ClusterFacts | None = None
    owned_namespaces: frozenset[str] = frozenset()  # the draft team's, on the draft cluster
    catalog: Mapping[str, RoleFacts] = field(default_factory=dict)  # lower name and GUID keys
    # Live federated credentials for the draft's subject: (issuer, subject) -> (identity id, name).
    federations: Mapping[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    identity: IdentityFacts | None = None
    taken_identity_names: frozenset[str] = frozenset()  # lower-cased, live, same resource group
    other_open_requests_for_subject: int = 0
    # Resource group ids (lower-cased) -> the team that owns the group, for the draft's scopes.
    scope_owners: Mapping[str, str] = field(default_factory=dict)
    # Resource group ids (lower-cased) that hold the portal's own managed identities.
    protected_resource_groups: frozenset[str] = frozenset()
    # What Azure Resource Graph answered for the draft's scopes: the existence ids (subscription,
    # resource group or top-level resource; lower-cased) that exist. None = not looked up
    # (the check is off, or Azure could not be asked: then `scope_lookup_error` says why).
    existing_scopes: frozenset[str] | None = None
    scope_lookup_error: str = ""
    # Existence ids (lower-cased) -> the team named by the resource's ownership tag.
    tag_owners: Mapping[str, str] = field(default_factory=dict)
    ownership_tag: str = "owner-team"
    # Time-bound access: the longest end date allowed, in days from `now` (0 = unlimited); a
    # privileged role must have an end date when its maximum is set.
    now: datetime | None = None
    access_max_days: int = 0
    access_max_days_privileged: int = 0


@dataclass(frozen=True)
class RiskSummary:
    level: str  # "low", "medium" or "high"
    reasons: tuple[str, ...]
