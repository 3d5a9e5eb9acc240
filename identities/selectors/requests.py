"""Requests and identities a user may see, and one of them by id (unknown and invisible are the
same 404)."""

from __future__ import annotations

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
    RequestStatus,
    RoleAssignment,
)
from identities.naming import fic_subject
from identities.selectors.people import teams_of

# --- requests and identities ---------------------------------------------------------------


def identity_requests_visible_to(user: Any) -> QuerySet[IdentityRequest]:
    queryset = IdentityRequest.objects.select_related(
        "team", "cluster", "requester", "identity"
    ).prefetch_related(
        Prefetch("roles", queryset=_requested_roles()),
        Prefetch("approvals", queryset=Approval.objects.select_related("approver", "on_behalf_of")),
        "owner_teams",
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


def _requested_roles() -> QuerySet[RequestedRole]:
    return RequestedRole.objects.select_related("role").order_by("id")


def _role_assignments() -> QuerySet[RoleAssignment]:
    return RoleAssignment.objects.select_related("role").order_by("id")


def ids_or_none(pk: int | None) -> list[int]:
    return [] if pk is None else [pk]
