"""Requests and identities a user may see, and one of them by id (unknown and invisible are the
same 404)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from identities import roles
from identities.errors import NotFoundError
from identities.models import (
    REQUEST_STATUSES_OPEN,
    Approval,
    ChildStatus,
    Cluster,
    FederatedCredential,
    Identity,
    IdentityRequest,
    RequestedRole,
    RequestKind,
    RequestRevision,
    RequestStatus,
    RoleAssignment,
    RoleChange,
)
from identities.naming import fic_subject
from identities.policy import RoleDraft
from identities.scopes import ScopeError, canonical_scope
from identities.selectors.people import teams_of

# --- requests and identities ---------------------------------------------------------------


def identity_requests_visible_to(user: Any) -> QuerySet[IdentityRequest]:
    queryset = IdentityRequest.objects.select_related(
        "team", "cluster", "requester", "identity"
    ).prefetch_related(
        Prefetch("roles", queryset=_requested_roles()),
        Prefetch("approvals", queryset=Approval.objects.select_related("approver", "on_behalf_of")),
        "owner_teams",
        Prefetch("revisions", queryset=RequestRevision.objects.select_related("sent_back_by")),
    )
    if roles.sees_everything(user):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    teams = teams_of(user)
    # A team that owns a scope of another team's request sees it: it has to approve it.
    needing_my_team = IdentityRequest.objects.filter(owner_teams__in=teams).values("pk")
    return queryset.filter(Q(team__in=teams) | Q(requester=user) | Q(pk__in=needing_my_team))


def identity_request_get(*, user: Any, pk: int) -> IdentityRequest:
    """One request, or NotFoundError when it is missing or not visible to `user`."""
    identity_request = identity_requests_visible_to(user).filter(pk=pk).first()
    if identity_request is None:
        raise NotFoundError(f"Identity request {pk} was not found.")
    return identity_request


def identities_visible_to(user: Any) -> QuerySet[Identity]:
    queryset = Identity.objects.select_related("team", "cluster").prefetch_related(
        Prefetch("federated_credentials", queryset=FederatedCredential.objects.order_by("id")),
        Prefetch("role_assignments", queryset=_role_assignments()),
    )
    if roles.sees_everything(user):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    return queryset.filter(team__in=teams_of(user))


def identity_get(*, user: Any, pk: int) -> Identity:
    """One identity, or NotFoundError when it is missing or not visible to `user`."""
    identity = identities_visible_to(user).filter(pk=pk).first()
    if identity is None:
        raise NotFoundError(f"Identity {pk} was not found.")
    return identity


# --- one workload (cluster, namespace, ServiceAccount) -----------------------------------------


class WorkloadOutcome(StrEnum):
    """What `ensure` found for a workload, or that it filed a request."""

    IDENTITY_EXISTS = "identity_exists"  # a live identity federates it (its request is ready)
    REQUEST_OPEN = "request_open"  # a request for it is pending, in flight or failed
    CREATED = "created"


@dataclass(frozen=True)
class WorkloadMatch:
    """The request that stands for a workload: the one that federated its ServiceAccount with a
    live identity, or the open one asking for it."""

    outcome: WorkloadOutcome
    identity_request: IdentityRequest
    identity: Identity | None


def workload_match(
    *, user: Any, cluster: str, namespace: str, service_account: str
) -> WorkloadMatch | None:
    """The identity or open request `user` can see for this ServiceAccount on this cluster, or
    None. Another team's are never returned (the caller then meets the policy's refusal)."""
    cluster_row = Cluster.objects.filter(name=cluster).first()
    if cluster_row is None or not namespace or not service_account:
        return None
    visible = identity_requests_visible_to(user)
    # The FIC is written at approval, so this also finds approved, provisioning and failed ones.
    # (issuer, subject) hits the partial unique index of live credentials. A credential being
    # removed no longer counts: a new request then meets the policy's already_federated.
    federated = (
        FederatedCredential.objects.filter(
            issuer=cluster_row.oidc_issuer_url,
            subject=fic_subject(namespace, service_account),
            status__in=(ChildStatus.PENDING, ChildStatus.ACTIVE),
            identity__in=identities_visible_to(user).values("pk"),
            identity_request__isnull=False,
        )
        .values_list("identity_request_id", flat=True)
        .first()
    )
    if federated is not None:
        identity_request = visible.filter(pk=federated).first()
        if identity_request is not None:
            ready = identity_request.status == RequestStatus.READY
            return WorkloadMatch(
                outcome=WorkloadOutcome.IDENTITY_EXISTS if ready else WorkloadOutcome.REQUEST_OPEN,
                identity_request=identity_request,
                identity=identity_request.identity,
            )
    open_request = (
        visible.filter(
            cluster=cluster_row,
            namespace=namespace,
            service_account=service_account,
            status__in=REQUEST_STATUSES_OPEN,
        )
        .exclude(kind=RequestKind.DECOMMISSION)
        .order_by("created_at", "id")
        .first()
    )
    if open_request is None:
        return None
    return WorkloadMatch(
        outcome=WorkloadOutcome.REQUEST_OPEN,
        identity_request=open_request,
        identity=open_request.identity,
    )


# A change request's diff, in the order it is shown: what it adds, removes, and leaves alone.
DIFF_GROUPS = (
    ("added", RoleChange.ADD),
    ("removed", RoleChange.REMOVE),
    ("unchanged", RoleChange.KEEP),
    ("renewed", RoleChange.RENEW),
)


def role_change_diff(identity_request: IdentityRequest) -> dict[str, list[dict[str, str]]]:
    """A change request's diff per role and scope: {"added", "removed", "unchanged"} lists of
    {"role", "role_definition_guid", "scope"} (from the prefetched roles when there are)."""
    rows = list(identity_request.roles.all())
    return {
        group: [
            {
                "role": row.role.name,
                "role_definition_guid": row.role.role_definition_guid,
                "scope": row.scope,
                **({"expires_at": row.expires_at.isoformat()} if row.expires_at else {}),
            }
            for row in rows
            if row.change == change
        ]
        for group, change in DIFF_GROUPS
    }


def role_change_from_wanted(
    identity: Identity, wanted: Sequence[RoleDraft]
) -> tuple[list[RoleDraft], list[RoleDraft]]:
    """The (add, remove) that turns `identity`'s live roles into `wanted` (the form's roles,
    prefilled from the current ones): a role and scope compared as ARM does, ignoring case and
    spelling; a scope that does not parse is an addition, which the policy then refuses."""

    def key(role: str, scope: str) -> tuple[str, str]:
        with contextlib.suppress(ScopeError):
            scope = canonical_scope(scope)
        return role.strip().lower(), scope.strip().lower()

    held = {
        key(assignment.role.name, assignment.scope): assignment
        for assignment in identity.role_assignments.all()
        if assignment.status != ChildStatus.REMOVED
    }
    guids = {a.role.role_definition_guid.lower(): a.role.name.lower() for a in held.values()}
    wanted_keys: set[tuple[str, str]] = set()
    add: list[RoleDraft] = []
    for requested in wanted:
        role_key, scope_key = key(requested.role, requested.scope)
        wanted_key = (guids.get(role_key, role_key), scope_key)
        if wanted_key in wanted_keys:
            continue
        wanted_keys.add(wanted_key)
        if wanted_key not in held:
            add.append(requested)
    remove = [
        RoleDraft(role=assignment.role.name, scope=assignment.scope)
        for held_key, assignment in held.items()
        if held_key not in wanted_keys
    ]
    return add, remove


def role_renewals(identity: Identity, wanted: Sequence[RoleDraft]) -> list[RoleDraft]:
    """The roles in `wanted` (the change form's rows) that `identity` holds with another end
    date: each a renewal, with its new end (None = no end)."""
    held = {
        (assignment.role.name.lower(), assignment.scope.lower()): assignment
        for assignment in identity.role_assignments.all()
        if assignment.status != ChildStatus.REMOVED
    }
    renew: list[RoleDraft] = []
    for requested in wanted:
        scope = requested.scope.strip()
        with contextlib.suppress(ScopeError):
            scope = canonical_scope(scope)
        assignment = held.get((requested.role.strip().lower(), scope.lower()))
        if assignment is not None and assignment.expires_at != requested.expires_at:
            renew.append(
                RoleDraft(assignment.role.name, assignment.scope, expires_at=requested.expires_at)
            )
    return renew


def revision_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed between two revisions of a request, as the audit trail describes them:
    each field's from/to; roles (and a change's roles added or removed) as lists added and
    dropped between the revisions."""
    changes: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if key == "roles":
            changes["roles"] = _roles_delta(old or [], new or [])
        elif key == "diff":
            for group in ("added", "removed"):
                delta = _roles_delta((old or {}).get(group, []), (new or {}).get(group, []))
                if delta["added"] or delta["dropped"]:
                    changes[f"roles {group}"] = delta
        else:
            changes[key] = {"from": old, "to": new}
    return changes


def _roles_delta(
    old: list[dict[str, str]], new: list[dict[str, str]]
) -> dict[str, list[dict[str, str]]]:
    def key(row: dict[str, str]) -> tuple[str, str]:
        return row["role"].lower(), row["scope"].lower()

    old_keys, new_keys = {key(r) for r in old}, {key(r) for r in new}
    return {
        "added": [{"role": r["role"], "scope": r["scope"]} for r in new if key(r) not in old_keys],
        "dropped": [
            {"role": r["role"], "scope": r["scope"]} for r in old if key(r) not in new_keys
        ],
    }


def request_revisions(identity_request: IdentityRequest) -> list[dict[str, Any]]:
    """Each earlier revision of a request (sent back, with the approver's comment) and what the
    next revision changed; the last "next" is the request as it is now."""
    revisions = sorted(identity_request.revisions.all(), key=lambda revision: revision.number)
    if not revisions:
        return []
    from_describe = [r.content for r in revisions[1:]]
    current = identity_request_content(identity_request)
    return [
        {
            "number": revision.number,
            "sent_back_by": revision.sent_back_by.get_username(),
            "comment": revision.comment,
            "created_at": revision.created_at,
            "approvals": revision.approvals,
            "content": revision.content,
            "changes_in_next": revision_changes(revision.content, following),
        }
        for revision, following in zip(revisions, [*from_describe, current], strict=True)
    ]


def identity_request_content(identity_request: IdentityRequest) -> dict[str, Any]:
    """What a request asks for, in the shape the audit trail and revisions keep."""
    rows = list(identity_request.roles.all())
    content: dict[str, Any] = {
        "justification": identity_request.justification,
        "is_exception": identity_request.is_exception,
    }
    if identity_request.kind == RequestKind.CHANGE_ROLES:
        content["diff"] = role_change_diff(identity_request)
    else:
        content["roles"] = [{"role": r.role.name, "scope": r.scope} for r in rows]
        content["tags"] = dict(identity_request.tags or {})
    return content


def identity_history(identity: Identity) -> QuerySet[IdentityRequest]:
    """Every request that concerned `identity` (it created it, changed its roles, added a
    ServiceAccount, or removes it), newest first, with who asked, who decided and the roles."""
    return (
        IdentityRequest.objects.filter(identity=identity)
        .select_related("requester")
        .prefetch_related(
            Prefetch("roles", queryset=_requested_roles()),
            Prefetch(
                "approvals",
                queryset=Approval.objects.select_related("approver", "on_behalf_of"),
            ),
        )
        .order_by("-created_at", "-id")
    )


def _requested_roles() -> QuerySet[RequestedRole]:
    return RequestedRole.objects.select_related("role").order_by("id")


def _role_assignments() -> QuerySet[RoleAssignment]:
    return RoleAssignment.objects.select_related("role").order_by("id")


def ids_or_none(pk: int | None) -> list[int]:
    return [] if pk is None else [pk]
