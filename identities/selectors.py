"""Reads. Visibility is enforced here and nowhere else: requesters see their teams' objects;
approvers, auditors and admins see everything. Views and the API never filter by hand."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from identities import roles
from identities.audit_chain import chain_end, check_is_authentic, stored_hash, verify_tail
from identities.errors import NotFoundError, PermissionDeniedError
from identities.lifecycle import OPEN_REQUEST_STATUSES
from identities.models import (
    GENESIS_HASH,
    Approval,
    ApprovalDecision,
    AuditChainCheck,
    AuditEvent,
    CatalogRole,
    ChainCheckStatus,
    ChildStatus,
    Cluster,
    FederatedCredential,
    Identity,
    IdentityRequest,
    IdentityStatus,
    NamespaceOwnership,
    RequestedRole,
    RequestKind,
    RequestStatus,
    RoleAssignment,
    Team,
)
from identities.naming import fic_subject, uami_name
from identities.policy import (
    ClusterFacts,
    IdentityFacts,
    PolicyContext,
    PolicyResult,
    RequestDraft,
    RiskSummary,
    RoleDraft,
    RoleFacts,
    evaluate_request,
    risk_summary,
)
from identities.validators import is_dns1123_label, is_dns1123_subdomain

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


# --- requests and identities ---------------------------------------------------------------


def identity_requests_visible_to(user: Any) -> QuerySet[IdentityRequest]:
    queryset = IdentityRequest.objects.select_related(
        "team", "cluster", "requester", "identity"
    ).prefetch_related(
        Prefetch("roles", queryset=_requested_roles()),
        Prefetch("approvals", queryset=Approval.objects.select_related("approver")),
    )
    if roles.sees_everything(user):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    return queryset.filter(Q(team__in=teams_of(user)) | Q(requester=user))


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


def _requested_roles() -> QuerySet[RequestedRole]:
    return RequestedRole.objects.select_related("role").order_by("id")


def _role_assignments() -> QuerySet[RoleAssignment]:
    return RoleAssignment.objects.select_related("role").order_by("id")


def _ids(pk: int | None) -> list[int]:
    return [] if pk is None else [pk]


# --- policy --------------------------------------------------------------------------------


def identity_request_draft(identity_request: IdentityRequest) -> RequestDraft:
    """The saved request as a draft, to run the policy over it again."""
    return RequestDraft(
        kind=identity_request.kind,
        team=identity_request.team.name,
        cluster=identity_request.cluster.name,
        namespace=identity_request.namespace,
        service_account=identity_request.service_account,
        app_name=identity_request.app_name,
        roles=tuple(
            RoleDraft(role=requested.role.name, scope=requested.scope)
            for requested in identity_request.roles.all()
        ),
        tags=dict(identity_request.tags or {}),
        justification=identity_request.justification,
        is_exception=identity_request.is_exception,
        identity_id=identity_request.identity_id,
    )


def catalog_facts() -> dict[str, RoleFacts]:
    """The role catalog for the policy, keyed by lower-cased name and by GUID."""
    catalog: dict[str, RoleFacts] = {}
    for role in CatalogRole.objects.all():
        facts = RoleFacts(
            name=role.name,
            guid=role.role_definition_guid,
            resource_types=tuple(role.resource_types or ()),
            privileged=role.privileged,
            can_assign_roles=role.can_assign_roles,
        )
        catalog[role.name.lower()] = facts
        catalog[role.role_definition_guid.lower()] = facts
    return catalog


def policy_context_for(
    draft: RequestDraft,
    *,
    exclude_request_id: int | None = None,
    catalog: dict[str, RoleFacts] | None = None,
) -> PolicyContext:
    """Everything the policy checks need to know about the world for `draft`.

    `exclude_request_id` is the request being re-checked, so it does not count against itself;
    `catalog` saves reloading the catalog when checking many drafts.
    """
    team = Team.objects.filter(name=draft.team).first() if draft.team else None
    cluster = Cluster.objects.filter(name=draft.cluster).first() if draft.cluster else None
    cluster_facts = None
    owned: frozenset[str] = frozenset()
    if cluster is not None:
        cluster_facts = ClusterFacts(
            name=cluster.name,
            subscription_id=cluster.subscription_id,
            resource_group=cluster.resource_group,
            oidc_issuer_url=cluster.oidc_issuer_url,
            workload_identity_enabled=cluster.workload_identity_enabled,
            allowed_scope_subscriptions=frozenset(
                s.lower() for s in cluster.allowed_scope_subscriptions
            ),
        )
        if team is not None:
            owned = frozenset(
                NamespaceOwnership.objects.filter(cluster=cluster, team=team).values_list(
                    "namespace", flat=True
                )
            )
    if catalog is None:
        catalog = catalog_facts()

    federations: dict[tuple[str, str], tuple[int, str]] = {}
    taken: frozenset[str] = frozenset()
    other_open = 0
    workload_ok = is_dns1123_label(draft.namespace) and is_dns1123_subdomain(draft.service_account)
    if workload_ok:
        live_fics = (
            FederatedCredential.objects.filter(
                subject=fic_subject(draft.namespace, draft.service_account)
            )
            .exclude(status=ChildStatus.REMOVED)
            .select_related("identity")
        )
        if cluster is not None:
            # Only the cluster's issuer matters, and (issuer, subject) hits the unique index.
            live_fics = live_fics.filter(issuer=cluster.oidc_issuer_url)
        for fic in live_fics:
            federations[(fic.issuer, fic.subject)] = (fic.identity_id, fic.identity.name)
        if cluster is not None:
            other_open = (
                IdentityRequest.objects.filter(
                    cluster=cluster,
                    namespace=draft.namespace,
                    service_account=draft.service_account,
                    status=RequestStatus.PENDING,
                )
                .exclude(pk__in=_ids(exclude_request_id))
                .count()
            )
            if draft.kind == RequestKind.NEW and is_dns1123_label(draft.app_name):
                name = uami_name(
                    cluster=cluster.name,
                    namespace=draft.namespace,
                    app_name=draft.app_name,
                    service_account=draft.service_account,
                )
                # Lower(...) = lower(value), as in the partial unique index, so it is used.
                taken = frozenset(
                    n.lower()
                    for n in Identity.objects.annotate(
                        subscription_lower=Lower("subscription_id"),
                        resource_group_lower=Lower("resource_group"),
                        name_lower=Lower("name"),
                    )
                    .filter(
                        subscription_lower=cluster.subscription_id.lower(),
                        resource_group_lower=cluster.resource_group.lower(),
                        name_lower=name.lower(),
                    )
                    .exclude(status=IdentityStatus.DECOMMISSIONED)
                    .values_list("name", flat=True)
                )

    return PolicyContext(
        team_exists=team is not None,
        cluster=cluster_facts,
        owned_namespaces=owned,
        catalog=catalog,
        federations=federations,
        identity=_identity_facts(draft.identity_id, exclude_request_id=exclude_request_id),
        taken_identity_names=taken,
        other_open_requests_for_subject=other_open,
    )


def _identity_facts(identity_id: int | None, *, exclude_request_id: int | None) -> Any:
    if identity_id is None:
        return None
    identity = Identity.objects.select_related("team").filter(pk=identity_id).first()
    if identity is None:
        return None
    return IdentityFacts(
        id=identity.pk,
        name=identity.name,
        team=identity.team.name,
        status=identity.status,
        live_fic_count=identity.federated_credentials.exclude(status=ChildStatus.REMOVED).count(),
        decommission_open=IdentityRequest.objects.filter(
            identity=identity,
            kind=RequestKind.DECOMMISSION,
            status__in=OPEN_REQUEST_STATUSES,
        )
        .exclude(pk__in=_ids(exclude_request_id))
        .exists(),
    )


def identity_request_policy(
    identity_request: IdentityRequest, *, catalog: dict[str, RoleFacts] | None = None
) -> PolicyResult:
    """The policy verdict on a saved request, as the world is now."""
    draft = identity_request_draft(identity_request)
    context = policy_context_for(draft, exclude_request_id=identity_request.pk, catalog=catalog)
    return evaluate_request(draft, context)


# --- approvals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalQueueItem:
    """A pending request as an approver sees it."""

    identity_request: IdentityRequest
    policy: PolicyResult
    risk: RiskSummary
    approvals: tuple[str, ...]  # usernames of approvals so far
    approvals_required: int
    can_approve: bool
    blocked_reason: str


def approval_queue(user: Any) -> list[ApprovalQueueItem]:
    """Pending requests, oldest first, each with its policy findings re-evaluated now."""
    if not roles.is_approver(user):
        raise PermissionDeniedError("Only approvers have an approval queue.")
    pending = (
        identity_requests_visible_to(user)
        .filter(status=RequestStatus.PENDING)
        .order_by("created_at", "id")
    )
    items = []
    catalog = catalog_facts()
    for identity_request in pending:
        result = identity_request_policy(identity_request, catalog=catalog)
        decided = list(identity_request.approvals.all())
        approved_by = tuple(
            a.approver.get_username() for a in decided if a.decision == ApprovalDecision.APPROVE
        )
        blocked = ""
        if identity_request.requester_id == user.pk:
            blocked = "You filed this request."
        elif any(a.approver_id == user.pk for a in decided):
            blocked = "You already approved this request; it needs another approver."
        elif result.violations:
            blocked = "It now breaks policy; reject it with a comment."
        items.append(
            ApprovalQueueItem(
                identity_request=identity_request,
                policy=result,
                risk=risk_summary(identity_request_draft(identity_request), result),
                approvals=approved_by,
                approvals_required=identity_request.approvals_required,
                can_approve=not blocked,
                blocked_reason=blocked,
            )
        )
    return items


# --- audit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEventFilters:
    action: str | None = None  # exact, or a prefix ending in "." ("identity_request.")
    identity_request_id: int | None = None
    identity_id: int | None = None
    actor_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_events_visible_to(
    user: Any, filters: AuditEventFilters | None = None
) -> QuerySet[AuditEvent]:
    """Audit rows, newest first. Requesters see rows about their teams' requests and identities."""
    queryset = AuditEvent.objects.select_related("actor", "identity_request", "identity")
    if not roles.sees_everything(user):
        if not getattr(user, "is_authenticated", False):
            return queryset.none()
        teams = teams_of(user)
        queryset = queryset.filter(
            Q(identity_request__team__in=teams) | Q(identity__team__in=teams)
        )
    filters = filters or AuditEventFilters()
    if filters.action:
        if filters.action.endswith("."):
            queryset = queryset.filter(action__startswith=filters.action)
        else:
            queryset = queryset.filter(action=filters.action)
    if filters.identity_request_id is not None:
        queryset = queryset.filter(identity_request_id=filters.identity_request_id)
    if filters.identity_id is not None:
        queryset = queryset.filter(identity_id=filters.identity_id)
    if filters.actor_id is not None:
        queryset = queryset.filter(actor_id=filters.actor_id)
    if filters.since is not None:
        queryset = queryset.filter(created_at__gte=filters.since)
    if filters.until is not None:
        queryset = queryset.filter(created_at__lt=filters.until)
    return queryset.order_by("-id")


# --- audit chain checks ----------------------------------------------------------------------


def chain_check_stale_after() -> timedelta:
    """A check still running after this was abandoned (its worker died): as long as a task
    may run at all."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)


def audit_chain_check_running() -> AuditChainCheck | None:
    """The check a worker is running now, if any (abandoned ones do not count)."""
    return (
        AuditChainCheck.objects.filter(
            status=ChainCheckStatus.RUNNING,
            started_at__gte=timezone.now() - chain_check_stale_after(),
        )
        .select_related("requested_by")
        .order_by("-started_at")
        .first()
    )


def audit_chain_anchor(*, before: AuditChainCheck | None = None) -> AuditChainCheck | None:
    """The newest passed check whose signature holds (finished before `before` started)."""
    passed = AuditChainCheck.objects.filter(status=ChainCheckStatus.PASSED)
    if before is not None:
        passed = passed.filter(finished_at__lte=before.started_at).exclude(pk=before.pk)
    for check in passed.order_by("-finished_at", "-id")[:20]:
        if check_is_authentic(check):
            return check
    return None


@dataclass(frozen=True)
class ChainStatus:
    """What the audit page says about the whole chain, from the newest full check plus a live
    walk of the rows added since (when there are few enough of them).

    `ok` is None when the chain is too long to walk on a page view and no full check has
    passed or failed yet."""

    ok: bool | None
    rows: int
    full_check: AuditChainCheck | None = None  # the newest finished full check (passed/failed)
    tail_rows: int = 0  # rows after the part the full check verified
    tail_verified: bool = False  # those rows were walked for this status
    broken_id: int | None = None
    reason: str = ""
    found_by: str = ""  # which check found the break
    forged: bool = False  # full_check's record does not carry its signature
    running: AuditChainCheck | None = None
    last_error: AuditChainCheck | None = None  # a newer check that could not finish
    newest_hash: str = ""


def audit_chain_status(user: Any, *, tail_limit: int | None = None) -> ChainStatus | None:
    """The chain's verdict for the audit page; None for users who do not see every row."""
    if not roles.sees_everything(user):
        return None
    if tail_limit is None:
        tail_limit = settings.AUDIT_TAIL_VERIFY_LIMIT
    rows = chain_end()
    running = audit_chain_check_running()
    finished = AuditChainCheck.objects.exclude(status=ChainCheckStatus.RUNNING).select_related(
        "requested_by"
    )
    full = (
        finished.filter(status__in=[ChainCheckStatus.PASSED, ChainCheckStatus.FAILED])
        .order_by("-finished_at", "-id")
        .first()
    )
    errors = finished.filter(status=ChainCheckStatus.ERROR)
    if full is not None:
        errors = errors.filter(finished_at__gt=full.finished_at)
    base = ChainStatus(
        ok=None,
        rows=rows,
        full_check=full,
        running=running,
        last_error=errors.order_by("-finished_at").first(),
    )
    if full is not None and not check_is_authentic(full):
        return replace(
            base,
            ok=False,
            forged=True,
            reason=(
                f"the record of check #{full.pk} was altered in the database: its verdict does "
                "not carry the portal's signature"
            ),
            found_by=f"check #{full.pk}",
        )
    if full is not None and full.status == ChainCheckStatus.FAILED:
        return replace(
            base,
            ok=False,
            broken_id=full.broken_id,
            reason=full.reason,
            found_by=f"check #{full.pk}",
        )
    after_id, after_hash = 0, GENESIS_HASH
    if full is not None and full.last_id is not None:
        after_id, after_hash = full.last_id, full.last_hash
        current = stored_hash(after_id)
        if current != after_hash:
            gone = current is None
            return replace(
                base,
                ok=False,
                broken_id=after_id,
                reason=(
                    f"row {after_id}, the last one check #{full.pk} verified, "
                    + (
                        "is gone: rows were removed from the end of the chain"
                        if gone
                        else "no longer has the hash it verified: the chain was rewritten up to it"
                    )
                ),
                found_by=f"comparing with check #{full.pk}",
            )
    tail_rows = max(rows - after_id, 0)
    if tail_rows > tail_limit:
        return replace(
            base,
            ok=True if full is not None else None,
            tail_rows=tail_rows,
            newest_hash=after_hash if full is not None else "",
        )
    walk = verify_tail(after_id=after_id, after_hash=after_hash)
    found_by = (
        f"checking the {tail_rows} rows added since check #{full.pk}"
        if full is not None
        else f"checking all {tail_rows} rows"
    )
    return replace(
        base,
        ok=walk.broken_id is None,
        tail_rows=tail_rows,
        tail_verified=True,
        broken_id=walk.broken_id,
        reason=walk.reason,
        found_by=found_by,
        newest_hash=walk.last_hash,
    )
