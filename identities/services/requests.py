"""Writes for identity requests: file, approve, reject, cancel, retry (the worker's marks are in
`identities.services.worker`).

Final approval commits the desired state (the Identity row for a new request, its federated
credential and role assignments, or "remove" for a decommission); the provisioning worker then
makes Azure match and reports back through the `identity_request_mark_*` services.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from identities import roles
from identities.audit import audit_batch, audit_record, audit_rows_deferred
from identities.audit.actions import AuditAction
from identities.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    PermissionDeniedError,
    PolicyViolationError,
)
from identities.lifecycle import cancellable, transition, transition_request
from identities.models import (
    Approval,
    ApprovalDecision,
    CatalogRole,
    ChildStatus,
    Cluster,
    FederatedCredential,
    Identity,
    IdentityRequest,
    IdentityStatus,
    NotificationEvent,
    RequestedRole,
    RequestKind,
    RequestStatus,
    RoleAssignment,
    RoleChange,
    Team,
)
from identities.naming import AUDIENCE, fic_name, fic_subject, uami_name
from identities.policy import RequestDraft, RoleDraft, evaluate_request
from identities.scopes import canonical_scope
from identities.selectors import (
    WorkloadMatch,
    WorkloadOutcome,
    identity_request_draft,
    identity_request_policy,
    is_team_member,
    may_act_for_team,
    policy_context_for,
    requested_roles,
    role_change_diff,
    stands_behind,
    workload_match,
)
from identities.selectors.dry_run import draft_check
from identities.services.notifications import notifications_record
from identities.tags import identity_tags
from identities.work import Work, enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import User


# --- filing ---------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def identity_request_create(*, requester: User, draft: RequestDraft) -> IdentityRequest:
    """File a new-identity or add-a-ServiceAccount request as `pending`, or raise
    PolicyViolationError with every violation. The requester must be on the team."""
    return _file_request(requester=requester, draft=draft)


@transaction.atomic(durable=True)
def identity_request_ensure(*, requester: User, draft: RequestDraft) -> WorkloadMatch:
    """Find-or-create by workload (cluster, namespace, ServiceAccount): the live identity that
    federates it (with the request that did), else the open request for it, else a new request
    filed as `identity_request_create` files it. Only what `requester` may see is found; finding
    writes nothing, filing is audited as usual. The draft's roles are not compared."""
    _require_requester(requester)
    # Concurrent ensures of one cluster queue here, so two pipeline runs file one request, not
    # two. FOR NO KEY UPDATE: inserts referencing the cluster (other requests) are not blocked.
    Cluster.objects.select_for_update(no_key=True).filter(name=draft.cluster).first()
    found = workload_match(
        user=requester,
        cluster=draft.cluster,
        namespace=draft.namespace,
        service_account=draft.service_account,
    )
    if found is not None:
        return found
    identity_request = _file_request(requester=requester, draft=draft)
    return WorkloadMatch(
        outcome=WorkloadOutcome.CREATED,
        identity_request=identity_request,
        identity=identity_request.identity,
    )


def _file_request(*, requester: User, draft: RequestDraft) -> IdentityRequest:
    checked = draft_check(requester=requester, draft=draft)  # the dry run checks the same
    draft, team, result = checked.draft, checked.team, checked.result
    if result.violations:
        raise PolicyViolationError(result)
    assert team is not None  # noqa: S101 - policy refused an unknown team above

    cluster = Cluster.objects.get(name=draft.cluster)
    identity_request = IdentityRequest.objects.create(
        kind=draft.kind,
        app_name=draft.app_name,
        team=team,
        cluster=cluster,
        namespace=draft.namespace,
        service_account=draft.service_account,
        justification=draft.justification.strip(),
        tags=dict(draft.tags) if draft.kind == RequestKind.NEW else {},
        requester=requester,
        is_exception=draft.is_exception,
        identity_id=draft.identity_id if draft.kind == RequestKind.ADD_SERVICE_ACCOUNT else None,
        identity_expires_at=(draft.identity_expires_at if draft.kind == RequestKind.NEW else None),
    )
    write_requested_roles(identity_request, draft.roles)
    if result.owner_teams:
        identity_request.owner_teams.set(Team.objects.filter(name__in=result.owner_teams))
    filed = audit_record(
        actor=requester,
        action=AuditAction.REQUEST_CREATED,
        identity_request=identity_request,
        identity=identity_request.identity,
        data={
            "kind": identity_request.kind,
            "request": describe_request(identity_request),
            "warnings": [w.as_dict() for w in result.warnings],
            # Who must approve besides security: on the trail, not only in the join table.
            "owner_teams": result.owner_teams,
        },
    )
    notifications_record(
        event=NotificationEvent.REQUEST_FILED,
        occurrence=filed,
        identity_request=identity_request,
        data={"actor": requester.get_username()},
    )
    return identity_request


@transaction.atomic(durable=True)
def identity_request_decommission_create(
    *, requester: User, identity: Identity, justification: str
) -> IdentityRequest:
    """File a request to remove `identity` (its role assignments, credentials, then the UAMI);
    it goes through the same approval as any other request."""
    return decommission_file(requester=requester, identity=identity, justification=justification)


def decommission_file(
    *, requester: User, identity: Identity, justification: str
) -> IdentityRequest:
    """The decommission filing inside the caller's transaction (an access review's "remove"
    files it with its attestation, atomically)."""
    _require_requester(requester)
    if not is_team_member(requester, identity.team_id):
        raise PermissionDeniedError(
            f"{requester.get_username()} is not a member of team {identity.team.name!r}."
        )
    draft = RequestDraft(
        kind=RequestKind.DECOMMISSION,
        team=identity.team.name,
        cluster=identity.cluster.name,
        app_name=identity.app_name,
        justification=justification,
        identity_id=identity.pk,
    )
    result = evaluate_request(draft, policy_context_for(draft))
    if result.violations:
        raise PolicyViolationError(result)
    identity_request = IdentityRequest.objects.create(
        kind=RequestKind.DECOMMISSION,
        app_name=identity.app_name,
        team_id=identity.team_id,
        cluster_id=identity.cluster_id,
        justification=justification.strip(),
        requester=requester,
        identity=identity,
    )
    filed = audit_record(
        actor=requester,
        action=AuditAction.REQUEST_CREATED,
        identity_request=identity_request,
        identity=identity,
        data={"kind": identity_request.kind, "request": describe_request(identity_request)},
    )
    notifications_record(
        event=NotificationEvent.REQUEST_FILED,
        occurrence=filed,
        identity_request=identity_request,
        data={"actor": requester.get_username()},
    )
    return identity_request


@transaction.atomic(durable=True)
def identity_request_change_create(
    *,
    requester: User,
    identity: Identity,
    add: Sequence[RoleDraft],
    remove: Sequence[RoleDraft],
    justification: str,
    is_exception: bool = False,
    renew: Sequence[RoleDraft] = (),
) -> IdentityRequest:
    """File a change of a ready identity's roles (`kind=change_roles`): `add` and `remove` are
    the delta, `renew` roles it keeps with a new end date; the roles it keeps are recorded too,
    so the request shows its whole diff. At most one change request is open per identity (the
    second is refused, naming the first)."""
    _require_requester(requester)
    # Row lock: two filings for one identity queue here, so the second sees the first.
    identity = (
        Identity.objects.select_for_update(no_key=True)
        .select_related("team", "cluster")
        .get(pk=identity.pk)
    )
    if not is_team_member(requester, identity.team_id):
        raise PermissionDeniedError(
            f"{requester.get_username()} is not a member of team {identity.team.name!r}."
        )
    draft = RequestDraft(
        kind=RequestKind.CHANGE_ROLES,
        team=identity.team.name,
        cluster=identity.cluster.name,
        app_name=identity.app_name,
        roles=tuple(add),
        remove=tuple(remove),
        renew=tuple(renew),
        justification=justification,
        is_exception=is_exception,
        identity_id=identity.pk,
    )
    result = evaluate_request(draft, policy_context_for(draft))
    if result.violations:
        raise PolicyViolationError(result)
    identity_request = IdentityRequest.objects.create(
        kind=RequestKind.CHANGE_ROLES,
        app_name=identity.app_name,
        team_id=identity.team_id,
        cluster_id=identity.cluster_id,
        justification=justification.strip(),
        requester=requester,
        is_exception=is_exception,
        identity=identity,
    )
    write_change_rows(identity_request, identity, add=add, remove=remove, renew=renew)
    if result.owner_teams:
        identity_request.owner_teams.set(Team.objects.filter(name__in=result.owner_teams))
    filed = audit_record(
        actor=requester,
        action=AuditAction.REQUEST_CREATED,
        identity_request=identity_request,
        identity=identity,
        data={
            "kind": identity_request.kind,
            "request": describe_request(identity_request),
            "warnings": [w.as_dict() for w in result.warnings],
            "owner_teams": result.owner_teams,
        },
    )
    notifications_record(
        event=NotificationEvent.REQUEST_FILED,
        occurrence=filed,
        identity_request=identity_request,
        data={"actor": requester.get_username()},
    )
    return identity_request


# --- deciding -------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def identity_request_approve(
    *,
    identity_request: IdentityRequest,
    approver: User,
    comment: str = "",
    revision: int | None = None,
) -> IdentityRequest:
    """Record `approver`'s approval. The approval that completes the count (one, or two distinct
    approvers for an exception) moves the request to `approved`, commits the desired state and,
    once committed, enqueues provisioning. The policy is re-run first.

    `revision`: the one the approver looked at (the web form and the API send it); the approval
    is refused if the request was sent back and changed since, so nobody approves a version
    they did not see."""
    # Row lock: concurrent approvals of one request queue here, so the approval count is exact.
    lock_identity_request(identity_request)
    if revision is not None and revision != identity_request.revision:
        raise ConflictError(
            f"Request {identity_request.pk} changed since you looked at it: you saw revision "
            f"{revision}, it is at revision {identity_request.revision} now. Review it again "
            "before approving."
        )
    if approver.pk == identity_request.requester_id:
        raise PermissionDeniedError("Requesters cannot approve their own requests.")
    if stands_behind(approver, identity_request.requester):
        raise PermissionDeniedError(
            "Requesters cannot approve their own requests: this one was filed by a pipeline of "
            "your team (or one you gave its credentials to)."
        )
    _require_pending(identity_request)
    # Every decision so far, read once (the row lock above keeps the list exact).
    decided = list(identity_request.approvals.select_related("approver", "on_behalf_of"))
    if any(decision.approver_id == approver.pk for decision in decided):
        raise ConflictError(
            f"{approver.get_username()} already decided on request {identity_request.pk}; "
            "an exception needs a second, different approver."
        )
    if identity_request.identity_id is not None:
        # Serializes approvals that add credentials to one identity (20-credential limit).
        Identity.objects.select_for_update(no_key=True).filter(
            pk=identity_request.identity_id
        ).first()
    # The role rows, read once for the policy's re-run and, on the last approval, the desired state.
    requested = requested_roles(identity_request)
    result = identity_request_policy(identity_request, requested=requested)
    # Ownership is judged now, not as it was at filing: keep the request's owners in step.
    owner_teams = list(Team.objects.filter(name__in=result.owner_teams))
    identity_request.owner_teams.set(owner_teams)
    acting_for = owner_team_to_act_for(identity_request, approver, owner_teams, decided=decided)
    if acting_for is None and not roles.is_approver(approver):
        raise PermissionDeniedError(
            "Only approvers, or members of a team that owns a scope of this request, can "
            "approve it."
        )
    if result.violations:
        raise PolicyViolationError(result)

    approval = Approval.objects.create(
        identity_request=identity_request,
        approver=approver,
        decision=ApprovalDecision.APPROVE,
        on_behalf_of=acting_for,
        comment=comment,
    )
    # In the model's order (created_at, id): this approval is the newest.
    approvals = [a for a in (*decided, approval) if a.decision == ApprovalDecision.APPROVE]
    approvers = [a.approver.get_username() for a in approvals if a.on_behalf_of is None]
    owners_approved = sorted({a.on_behalf_of.name for a in approvals if a.on_behalf_of})
    owners_pending = sorted({t.name for t in owner_teams} - set(owners_approved))
    decision = {
        "comment": comment,
        "revision": identity_request.revision,
        "approvers": approvers,
        "approvals_required": identity_request.approvals_required,
        "warnings": [w.as_dict() for w in result.warnings],
        # The owning teams as judged now (the join table follows this, it may have changed).
        "owner_teams": [team.name for team in owner_teams],
    }
    if owner_teams:
        decision.update(
            owner_approvals={
                a.on_behalf_of.name: a.approver.get_username() for a in approvals if a.on_behalf_of
            },
            owner_teams_pending=owners_pending,
        )
    if len(approvers) < identity_request.approvals_required or owners_pending:
        audit_record(
            actor=approver,
            action=AuditAction.REQUEST_APPROVAL_RECORDED,
            identity_request=identity_request,
            identity=identity_request.identity,
            data=decision,
        )
        return identity_request

    pk = identity_request.pk
    # robust: a broker outage must not turn a committed approval into an error; the sweeper
    # re-enqueues requests left in `approved` (DESIGN.md, "Celery is at-least-once").
    # Registered first, so that on commit the provisioning message goes out before the
    # notifications' (hooks run in the order given; a rollback drops them all).
    transaction.on_commit(lambda: enqueue(Work.PROVISION, pk), robust=True)
    # The desired state's audit row and the approval's, chained under one acquisition of the
    # chain's lock and inserted in one statement (no savepoint: this transaction is durable and
    # ends on any error inside).
    with audit_batch(savepoint=False), audit_rows_deferred():
        changes = commit_desired_state(
            identity_request,
            actor=approver,
            approvers=[a.approver.get_username() for a in approvals],
            requested=requested,
        )
        approved = transition(
            identity_request, to=RequestStatus.APPROVED, actor=approver, data=decision, **changes
        )
        notifications_record(
            event=NotificationEvent.REQUEST_APPROVED,
            occurrence=approved,
            identity_request=identity_request,
            data={"actor": approver.get_username(), "comment": comment},
        )
    return identity_request


@transaction.atomic(durable=True)
def identity_request_reject(
    *, identity_request: IdentityRequest, approver: User, comment: str
) -> IdentityRequest:
    """Reject a pending request; the comment, required, tells the requester why. Approvers may,
    and so may a member of a team that owns one of its scopes (it is their resource)."""
    if not comment.strip():
        raise DomainError("A rejection needs a comment telling the requester why.")
    lock_identity_request(identity_request)
    acting_for = owner_team_to_act_for(
        identity_request, approver, list(identity_request.owner_teams.all())
    )
    if acting_for is None and not roles.is_approver(approver):
        raise PermissionDeniedError(
            "Only approvers, or members of a team that owns a scope of this request, can reject it."
        )
    if approver.pk == identity_request.requester_id:
        raise PermissionDeniedError(
            "Requesters cannot decide on their own requests; cancel it instead."
        )
    _require_pending(identity_request)
    if identity_request.approvals.filter(approver=approver).exists():
        raise ConflictError(
            f"{approver.get_username()} already decided on request {identity_request.pk}."
        )
    Approval.objects.create(
        identity_request=identity_request,
        approver=approver,
        decision=ApprovalDecision.REJECT,
        on_behalf_of=acting_for,
        comment=comment.strip(),
    )
    rejected = transition(
        identity_request,
        to=RequestStatus.REJECTED,
        actor=approver,
        data={"comment": comment.strip()},
    )
    notifications_record(
        event=NotificationEvent.REQUEST_REJECTED,
        occurrence=rejected,
        identity_request=identity_request,
        data={"actor": approver.get_username(), "comment": comment.strip()},
    )
    return identity_request


@transaction.atomic(durable=True)
def identity_request_cancel(*, identity_request: IdentityRequest, actor: User) -> IdentityRequest:
    """Withdraw a pending or sent-back request (its requester or a member of its team), or a
    failed change of roles (its team, approvers or admins: `may_act_for_team`). A failed change
    keeps what Azure confirmed and drops the rest (`_settle_failed_change`); a drift check of the
    identity follows on commit, so anything Azure did unconfirmed shows as drift."""
    lock_identity_request(identity_request)
    if identity_request.status == RequestStatus.FAILED:
        if not may_act_for_team(actor, identity_request.team_id):
            raise PermissionDeniedError(
                "Only the team, approvers or admins can cancel a failed request."
            )
        if not cancellable(identity_request):
            raise ConflictError(
                f"request {identity_request.pk} is a failed {identity_request.kind} request; "
                "only a failed change of roles can be cancelled. Retry it instead."
            )
        identity = identity_request.identity
        assert identity is not None  # noqa: S101 - a CheckConstraint guarantees the target
        settled = _settle_failed_change(identity_request, identity)
        transition(identity_request, to=RequestStatus.CANCELLED, actor=actor, data=settled)
        identity_id = identity.pk
        transaction.on_commit(lambda: enqueue(Work.CHECK_IDENTITY_DRIFT, identity_id), robust=True)
        return identity_request
    if actor.pk != identity_request.requester_id and not is_team_member(
        actor, identity_request.team_id
    ):
        raise PermissionDeniedError("Only the requester or their team can cancel a request.")
    if identity_request.status != RequestStatus.SENT_BACK:
        _require_pending(identity_request)
    transition(identity_request, to=RequestStatus.CANCELLED, actor=actor)
    return identity_request


def _settle_failed_change(identity_request: IdentityRequest, identity: Identity) -> dict[str, Any]:
    """Make the identity's rows say what Azure confirmed of a failed change's delta, and return
    it for the audit row. Each write the worker recorded stands (an added role it saw created
    stays active, a removal it saw done stays removed); the rest of the delta is dropped: an
    added role never confirmed is `removed` (nothing will write it later), a role whose removal
    was never confirmed is `active` again (Azure still has it). A renewal's new end date was set
    at approval and stays. Rows of other requests are not touched."""
    now = timezone.now()
    assignments = identity.role_assignments.select_related("role")

    def described(rows: Any) -> list[dict[str, str]]:
        return [{"role": ra.role.name, "scope": ra.scope} for ra in rows]

    added = assignments.filter(identity_request=identity_request)
    kept_added = described(added.filter(status=ChildStatus.ACTIVE))
    dropped_rows = list(added.filter(status=ChildStatus.PENDING))
    added.filter(pk__in=[ra.pk for ra in dropped_rows]).update(
        status=ChildStatus.REMOVED, updated_at=now
    )
    removed, restored = [], []
    removals = identity_request.roles.filter(change=RoleChange.REMOVE).select_related("role")
    for requested in removals.order_by("id"):
        same_role = assignments.filter(role=requested.role, scope__iexact=requested.scope)
        removing = list(same_role.filter(status=ChildStatus.REMOVING))
        if removing:
            same_role.filter(pk__in=[ra.pk for ra in removing]).update(
                status=ChildStatus.ACTIVE, updated_at=now
            )
            restored += removing
        else:
            removed.append({"role": requested.role.name, "scope": requested.scope})
    return {
        "added": kept_added,
        "removed": removed,
        "not_added": described(dropped_rows),
        "not_removed": described(restored),
    }


@transaction.atomic(durable=True)
def identity_request_retry(*, identity_request: IdentityRequest, actor: User) -> IdentityRequest:
    """Send a failed request back to provisioning (the reconcile is idempotent, so nothing is
    created twice). Its team, approvers and admins may retry."""
    lock_identity_request(identity_request)
    if not may_act_for_team(actor, identity_request.team_id):
        raise PermissionDeniedError("Only the team, approvers or admins can retry a request.")
    if identity_request.status != RequestStatus.FAILED:
        raise ConflictError(
            f"request {identity_request.pk} is {identity_request.status}; only failed requests "
            "can be retried."
        )
    previous_error = identity_request.last_error
    transition_request(
        identity_request,
        to=RequestStatus.PROVISIONING,
        actor=actor,
        data={"retry": True, "previous_error": previous_error},
        last_error="",
    )
    pk = identity_request.pk
    transaction.on_commit(lambda: enqueue(Work.PROVISION, pk), robust=True)  # as in approve
    return identity_request


# --- helpers --------------------------------------------------------------------------------


def owner_team_to_act_for(
    identity_request: IdentityRequest,
    user: User,
    owner_teams: list[Team],
    *,
    decided: Sequence[Approval] | None = None,
) -> Team | None:
    """The owning team `user` decides for: one of the request's owner teams they are a member
    of and that has not approved yet (their decision is then that team's, not security's).
    `decided` is the request's approvals, when the caller has read them."""
    if decided is None:
        decided = list(
            identity_request.approvals.filter(
                decision=ApprovalDecision.APPROVE, on_behalf_of__isnull=False
            )
        )
    approved = {
        a.on_behalf_of_id
        for a in decided
        if a.decision == ApprovalDecision.APPROVE and a.on_behalf_of_id is not None
    }
    for team in owner_teams:
        if team.pk not in approved and is_team_member(user, team):
            return team
    return None


def write_change_rows(
    identity_request: IdentityRequest,
    identity: Identity,
    *,
    add: Sequence[RoleDraft],
    remove: Sequence[RoleDraft],
    renew: Sequence[RoleDraft] = (),
) -> None:
    """A change request's diff as rows: each role added, then each role the identity holds,
    removed, renewed (with its new end) or kept (the policy accepted `add`, `remove` and
    `renew`, so they parse and name roles)."""
    catalog = _catalog_by_name_and_guid()
    removed = {
        (catalog[r.role.strip().lower()].pk, canonical_scope(r.scope).lower()) for r in remove
    }
    renewed = {
        (catalog[r.role.strip().lower()].pk, canonical_scope(r.scope).lower()): r.expires_at
        for r in renew
    }
    rows = [
        RequestedRole(
            identity_request=identity_request,
            role=catalog[r.role.strip().lower()],
            scope=canonical_scope(r.scope),
            change=RoleChange.ADD,
            expires_at=r.expires_at,
        )
        for r in add
    ]
    for assignment in identity.role_assignments.exclude(status=ChildStatus.REMOVED).order_by("id"):
        held = (assignment.role_id, assignment.scope.lower())
        change = RoleChange.KEEP
        if held in removed:
            change = RoleChange.REMOVE
        elif held in renewed:
            change = RoleChange.RENEW
        rows.append(
            RequestedRole(
                identity_request=identity_request,
                role_id=assignment.role_id,
                scope=assignment.scope,
                change=change,
                expires_at=renewed.get(held, assignment.expires_at),
            )
        )
    RequestedRole.objects.bulk_create(rows)


def write_requested_roles(identity_request: IdentityRequest, roles: Sequence[RoleDraft]) -> None:
    """A new request's roles as rows, each scope in its one spelling (the policy accepted them)."""
    catalog = _catalog_by_name_and_guid()
    RequestedRole.objects.bulk_create(
        RequestedRole(
            identity_request=identity_request,
            role=catalog[requested.role.strip().lower()],
            scope=canonical_scope(requested.scope),
            expires_at=requested.expires_at,
        )
        for requested in roles
    )


def _catalog_by_name_and_guid() -> dict[str, CatalogRole]:
    catalog = {role.name.lower(): role for role in CatalogRole.objects.all()}
    catalog.update({role.role_definition_guid.lower(): role for role in catalog.values()})
    return catalog


def _require_requester(user: User) -> None:
    if not roles.is_requester(user):
        raise PermissionDeniedError("Only requesters can file identity requests.")


def lock_identity_request(identity_request: IdentityRequest) -> None:
    """Reload the request under a row lock (PostgreSQL; SQLite serializes whole transactions).

    Row locks on requests and identities are FOR NO KEY UPDATE: enough to serialize writers of
    the row, while still letting other transactions insert rows that reference it. A FOR UPDATE
    lock blocks the foreign-key check of an audit row naming the request or identity, and that
    insert runs under the audit chain lock, which the lock holder wants next: a deadlock.

    The team, cluster and requester come in the same query, unlocked (`of` names the request's
    row alone), as every decision reads them (unlocked as before, when first used). The
    identity is not: it is read when used, after this lock, or locked by whoever moves it.
    """
    try:
        identity_request.refresh_from_db(
            from_queryset=IdentityRequest.objects.select_related(
                "team", "cluster", "requester"
            ).select_for_update(no_key=True, of=("self",))
        )
    except IdentityRequest.DoesNotExist as exc:
        raise NotFoundError(f"Identity request {identity_request.pk} was not found.") from exc


def _require_pending(identity_request: IdentityRequest) -> None:
    if identity_request.status != RequestStatus.PENDING:
        raise ConflictError(
            f"request {identity_request.pk} is no longer pending (now {identity_request.status})."
        )


def describe_request(identity_request: IdentityRequest) -> dict[str, Any]:
    draft = identity_request_draft(identity_request)
    if identity_request.kind == RequestKind.CHANGE_ROLES:
        return {
            "app_name": draft.app_name,
            "team": draft.team,
            "cluster": draft.cluster,
            "identity_id": draft.identity_id,
            "diff": role_change_diff(identity_request),
            "justification": draft.justification,
            "is_exception": draft.is_exception,
        }
    return {
        "app_name": draft.app_name,
        "team": draft.team,
        "cluster": draft.cluster,
        "namespace": draft.namespace,
        "service_account": draft.service_account,
        "roles": [_described_role(r) for r in draft.roles],
        "tags": dict(draft.tags),
        "justification": draft.justification,
        "is_exception": draft.is_exception,
        "identity_id": draft.identity_id,
        # Time-bound access: present only when asked for (older rows read as before).
        **(
            {"identity_expires_at": draft.identity_expires_at.isoformat()}
            if draft.identity_expires_at
            else {}
        ),
    }


def _described_role(role: RoleDraft) -> dict[str, str]:
    described = {"role": role.role, "scope": role.scope}
    if role.expires_at is not None:
        described["expires_at"] = role.expires_at.isoformat()
    return described


def commit_desired_state(
    identity_request: IdentityRequest,
    *,
    actor: User | None,
    approvers: list[str] | None = None,
    requested: list[RequestedRole] | None = None,
) -> dict[str, Any]:
    """Write what Azure should look like once this request is done; returns request changes.
    `approvers`: the usernames of the request's approvals in order, for a new identity's tags,
    when the caller holds them (read from the request otherwise). `requested`: its role rows
    with their roles, when the caller read them under the request's lock (read here otherwise).

    The partial unique constraints on credentials and identities are the last line against two
    approvals racing for one ServiceAccount or one name; a clash is a ConflictError.
    """
    kind = identity_request.kind
    try:
        # No savepoint: both callers are durable transactions that end on the ConflictError.
        with transaction.atomic(savepoint=False):
            if kind == RequestKind.NEW:
                identity = _create_identity(identity_request, approvers=approvers)
                _add_federated_credential(identity_request, identity)
                rows = requested if requested is not None else requested_roles(identity_request)
                # One INSERT for the k rows (no save() logic or signals on RoleAssignment).
                RoleAssignment.objects.bulk_create(
                    [
                        RoleAssignment(
                            identity=identity,
                            role=row.role,
                            scope=row.scope,
                            identity_request=identity_request,
                            expires_at=row.expires_at,
                        )
                        for row in rows
                    ]
                )
                # Audit last: the chain lock is held until commit, so take it after row writes.
                audit_record(
                    actor=actor,
                    action=AuditAction.IDENTITY_CREATED,
                    identity_request=identity_request,
                    identity=identity,
                    data={
                        "name": identity.name,
                        "subscription_id": identity.subscription_id,
                        "resource_group": identity.resource_group,
                        "location": identity.location,
                        "tags": identity.tags,
                    },
                )
                return {"identity": identity}
            target = identity_request.identity
            assert target is not None  # noqa: S101 - a CheckConstraint guarantees the target
            if kind == RequestKind.ADD_SERVICE_ACCOUNT:
                _add_federated_credential(identity_request, target)
                return {}
            if kind == RequestKind.CHANGE_ROLES:
                _commit_role_change(identity_request, target, actor=actor)
                return {}
            # Decommission: everything of the identity is to be removed.
            live = ~Q(status=ChildStatus.REMOVED)
            target.federated_credentials.filter(live).update(status=ChildStatus.REMOVING)
            target.role_assignments.filter(live).update(status=ChildStatus.REMOVING)
            transition(
                target,
                to=IdentityStatus.DECOMMISSIONING,
                actor=actor,
                identity_request=identity_request,
            )
            return {}
    except IntegrityError as exc:
        raise ConflictError(
            f"request {identity_request.pk} clashes with an identity or credential created "
            f"meanwhile ({exc}); re-check the request."
        ) from exc


def _commit_role_change(
    identity_request: IdentityRequest, identity: Identity, *, actor: User | None
) -> None:
    """The delta as desired state: each added role a pending assignment, each removed one
    `removing`; the worker writes exactly those (the policy just checked they are the delta)."""
    rows = list(identity_request.roles.select_related("role"))
    for requested in rows:
        if requested.change == RoleChange.ADD:
            RoleAssignment.objects.create(
                identity=identity,
                role=requested.role,
                scope=requested.scope,
                identity_request=identity_request,
                expires_at=requested.expires_at,
            )
        elif requested.change == RoleChange.RENEW:
            # A new end date only: nothing to write in Azure (the sweep enforces it), and the
            # new end earns its own reminder.
            identity.role_assignments.filter(
                role=requested.role, scope__iexact=requested.scope
            ).exclude(status=ChildStatus.REMOVED).update(
                expires_at=requested.expires_at, reminded_for=None, updated_at=timezone.now()
            )
        elif requested.change == RoleChange.REMOVE:
            identity.role_assignments.filter(
                role=requested.role, scope__iexact=requested.scope
            ).exclude(status=ChildStatus.REMOVED).update(
                status=ChildStatus.REMOVING, updated_at=timezone.now()
            )
    # Audit last: the chain lock is held until commit, so take it after row writes.
    audit_record(
        actor=actor,
        action=AuditAction.IDENTITY_ROLES_CHANGING,
        identity_request=identity_request,
        identity=identity,
        data=role_change_diff(identity_request),
    )


def _create_identity(identity_request: IdentityRequest, *, approvers: list[str] | None) -> Identity:
    cluster = identity_request.cluster
    return Identity.objects.create(
        name=uami_name(
            cluster=cluster.name,
            namespace=identity_request.namespace,
            app_name=identity_request.app_name,
            service_account=identity_request.service_account,
        ),
        team_id=identity_request.team_id,
        cluster=cluster,
        app_name=identity_request.app_name,
        subscription_id=cluster.subscription_id,
        resource_group=cluster.resource_group,
        location=cluster.location,
        status=IdentityStatus.PROVISIONING,
        tags=identity_tags(identity_request, approvers=approvers),
        expires_at=identity_request.identity_expires_at,
    )


def _add_federated_credential(
    identity_request: IdentityRequest, identity: Identity
) -> FederatedCredential:
    cluster = identity_request.cluster
    return FederatedCredential.objects.create(
        identity=identity,
        name=fic_name(
            cluster=cluster.name,
            namespace=identity_request.namespace,
            service_account=identity_request.service_account,
        ),
        issuer=cluster.oidc_issuer_url,
        subject=fic_subject(identity_request.namespace, identity_request.service_account),
        audience=AUDIENCE,
        namespace=identity_request.namespace,
        service_account=identity_request.service_account,
        identity_request=identity_request,
    )
