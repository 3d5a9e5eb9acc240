"""The worker's writes: what Azure answered, recorded on the domain rows with an audit row each.

Approval already wrote the desired state (identity, credentials, role assignments); these
functions claim a request, record each Azure write as it lands, and report the outcome through
the domain's `identity_request_mark_*` services.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from identities.audit import audit_record, audit_rollback_guard, audit_rows_deferred
from identities.audit.actions import AuditAction
from identities.errors import ConflictError, PermissionDeniedError
from identities.models import (
    REQUEST_STATUSES_IN_FLIGHT,
    AuditEvent,
    ChildStatus,
    FederatedCredential,
    Identity,
    IdentityRequest,
    IdentityStatus,
    NotificationEvent,
    RequestKind,
    RequestStatus,
    RoleAssignment,
    RoleChange,
)
from identities.selectors import may_act_for_team
from identities.selectors.notifications import Audience, notification_audience
from identities.services import (
    identity_request_mark_failed,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
)
from identities.validators import FIC_LIMIT_PER_IDENTITY
from identities.work import Work, enqueue
from provisioning.azure import CallResult, IdentityState, RoleAssignmentState
from provisioning.bulk import update_rows
from provisioning.errors import GatewayError, PermanentError

# Rows the identity should have in Azure (repair re-PUTs these).
LIVE_CHILD = (ChildStatus.PENDING, ChildStatus.ACTIVE)
# Approved but not yet picked up, or picked up by a worker that may have died: the engine runs.


def _load(identity_request_id: int) -> IdentityRequest | None:
    return (
        IdentityRequest.objects.select_related("identity", "cluster", "team")
        .filter(pk=identity_request_id)
        .first()
    )


def request_in_flight(*, identity_request_id: int) -> IdentityRequest | None:
    """The request, with its identity, cluster and team, if it is approved or provisioning; None
    when there is nothing to do. Once approved, only the engine moves a request on (an approved
    request cannot be cancelled), so its Azure writes may start before `request_claim` commits."""
    identity_request = _load(identity_request_id)
    if identity_request is None or identity_request.status not in REQUEST_STATUSES_IN_FLIGHT:
        return None
    return identity_request


def request_claim(*, identity_request: IdentityRequest) -> IdentityRequest | None:
    """Move an approved request to provisioning (idempotent); None when there is nothing to do."""
    try:
        identity_request_mark_provisioning(identity_request=identity_request)
    except ConflictError:
        # A concurrent run (a redelivered message, the sweeper) claimed it first: carry on if it
        # is still provisioning, the engine is idempotent.
        reloaded = _load(identity_request.pk)
        if reloaded is None or reloaded.status != RequestStatus.PROVISIONING:
            return None
        return reloaded
    return identity_request


def request_defer(*, identity_request_id: int) -> None:
    """A run put off for ARM's write budget (its task comes back with a countdown): that is
    progress as far as the sweeper is concerned, so its window without progress restarts."""
    IdentityRequest.objects.filter(
        pk=identity_request_id, status=RequestStatus.PROVISIONING
    ).update(updated_at=timezone.now())


def request_fail(*, identity_request: IdentityRequest, error: GatewayError) -> None:
    with contextlib.suppress(ConflictError):  # another run finished it meanwhile
        identity_request_mark_failed(identity_request=identity_request, error=error.describe())


def request_ready_audience(*, identity_request: IdentityRequest) -> Audience | None:
    """The people who will hear that the request is ready, read while its calls are in flight
    so the record transaction that makes it ready does not (None with notifications off)."""
    if not settings.NOTIFICATIONS_ENABLED:
        return None
    return notification_audience(NotificationEvent.REQUEST_READY, identity_request=identity_request)


def request_complete(
    *, identity_request: IdentityRequest, audience: Audience | None = None
) -> bool:
    """The request is ready; False if another run finished it first (this one changes nothing
    then). Called inside the record transaction of the run's last phase (see `reconcile`), so
    that case must not undo the records. The identity in memory holds its outputs (loaded with
    the request, or stored by this run's record of its PUT). `audience`: see
    `request_ready_audience`."""
    identity = identity_request.identity
    data: dict[str, Any] = {}
    if identity is not None:
        data = {
            "client_id": identity.client_id,
            "principal_id": identity.principal_id,
            "tenant_id": identity.tenant_id,
            "resource_id": identity.resource_id,
        }
    try:
        # Its audit rows may be held in the record's deferred block: dropped with its savepoint.
        with audit_rollback_guard():
            identity_request_mark_ready(
                identity_request=identity_request, data=data, audience=audience
            )
    except ConflictError:
        return False
    return True


def target_identity(*, identity_request: IdentityRequest) -> Identity:
    identity = identity_request.identity
    if identity is None:
        raise PermanentError(f"request {identity_request.pk} has no identity to work on")
    return identity


def pending_fics(
    *, identity_request: IdentityRequest, identity: Identity
) -> QuerySet[FederatedCredential]:
    return identity.federated_credentials.filter(
        identity_request=identity_request, status=ChildStatus.PENDING
    )


def pending_role_assignments(*, identity: Identity) -> QuerySet[RoleAssignment]:
    return identity.role_assignments.filter(status=ChildStatus.PENDING).select_related("role")


def recorded_step_keys(*, identity_request: IdentityRequest, identity: Identity) -> list[str]:
    """Keys of the steps whose outcome is already on the identity's child rows: credentials and
    role assignments made active (provisioning) or removed (decommission); a role change's
    assignments of either kind, its own additions and the removals."""
    if identity_request.kind == RequestKind.CHANGE_ROLES:
        assignments = identity.role_assignments
        added = assignments.filter(identity_request=identity_request, status=ChildStatus.ACTIVE)
        removed = assignments.filter(status=ChildStatus.REMOVED)
        return [f"role:{pk}" for pk in added.values_list("pk", flat=True)] + [
            f"delete-role:{pk}" for pk in removed.values_list("pk", flat=True)
        ]
    if identity_request.kind == RequestKind.DECOMMISSION:
        status, fic_key, role_key = ChildStatus.REMOVED, "delete-fic:", "delete-role:"
    else:
        status, fic_key, role_key = ChildStatus.ACTIVE, "fic:", "role:"
    fics = identity.federated_credentials.filter(status=status).values_list("name", flat=True)
    roles = identity.role_assignments.filter(status=status).values_list("pk", flat=True)
    return [f"{fic_key}{name}" for name in fics] + [f"{role_key}{pk}" for pk in roles]


def origin_request(*, identity: Identity) -> IdentityRequest:
    """The request that created `identity`: later work on it (repair, revoke, tags) records its
    steps there, so the identity's progress view shows them."""
    origin = (
        IdentityRequest.objects.filter(identity=identity, kind=RequestKind.NEW)
        .order_by("created_at")
        .first()
    )
    if origin is None:
        raise ValueError(f"identity {identity.name} has no originating request")
    return origin


def removing_role_assignments(*, identity: Identity) -> QuerySet[RoleAssignment]:
    return identity.role_assignments.filter(status=ChildStatus.REMOVING).select_related("role")


def removing_fics(*, identity: Identity) -> QuerySet[FederatedCredential]:
    return identity.federated_credentials.filter(status=ChildStatus.REMOVING)


def active_fic_count(*, identity: Identity, besides: Iterable[FederatedCredential] = ()) -> int:
    """How many of the identity's credentials are active in Azure, `besides` not counted."""
    live = identity.federated_credentials.filter(status=ChildStatus.ACTIVE)
    return live.exclude(pk__in=[fic.pk for fic in besides]).count()


def fic_check_limit(
    *, identity: Identity, fic: FederatedCredential, active: int | None = None
) -> None:
    """Refuse the 21st credential before any Azure call (Azure's per-identity limit).
    `active`: the identity's other active credentials, when the caller counted them
    (`active_fic_count`); else they are counted now."""
    if active is None:
        active = active_fic_count(identity=identity, besides=[fic])
    if active >= FIC_LIMIT_PER_IDENTITY:
        raise PermanentError(
            f"identity {identity.name} already has {FIC_LIMIT_PER_IDENTITY} federated "
            "credentials, Azure's limit per identity",
            code="FederatedIdentityCredentialLimit",
        )


# A phase's records run in one transaction (steps_finish's audit batch), where any failure rolls
# the whole phase back: a savepoint per record would cost two more round trips per Azure write
# and could only ever be rolled back with everything else. Outermost, it is a transaction.
_record_atomically = transaction.atomic(savepoint=False)

# Per thread: the child-row updates `records_batched()` holds, [(model, pk, values)]; None
# outside one.
_held = threading.local()


@contextlib.contextmanager
def records_batched() -> Iterator[None]:
    """A phase's records, written together when the block ends (inside its audit batch): the
    child rows' updates in one statement per table and set of fields, then the audit rows in
    one INSERT (`audit_rows_deferred`). k role assignments cost two statements, not 2k. Each
    row's update and each audit row are the ones the records asked for, in their order."""
    if getattr(_held, "updates", None) is not None:
        yield
        return
    updates: list[tuple[type[FederatedCredential | RoleAssignment], int, dict[str, Any]]] = []
    _held.updates = updates
    try:
        with audit_rows_deferred():
            yield
            _write_child_updates(updates)
    finally:
        _held.updates = None


def _write_child_updates(
    updates: list[tuple[type[FederatedCredential | RoleAssignment], int, dict[str, Any]]],
) -> None:
    now = timezone.now()  # when the rows are written: one value, not a CASE over the rows
    updates = [(model, pk, {**values, "updated_at": now}) for model, pk, values in updates]
    shapes: dict[tuple[Any, tuple[str, ...]], dict[int, dict[str, Any]]] = {}
    shape_of: dict[tuple[Any, int], tuple[Any, tuple[str, ...]]] = {}
    for model, pk, values in updates:
        shape = (model, tuple(values))  # in the records' order: status first, as one by one
        if shape_of.setdefault((model, pk), shape) != shape:
            # One row updated with two sets of fields: keep the records' order exactly.
            for each_model, each_pk, each_values in updates:
                each_model.objects.filter(pk=each_pk).update(**each_values)
            return
        shapes.setdefault(shape, {})[pk] = values  # a row updated twice: its last values
    for (model, _fields), rows in shapes.items():
        update_rows(model, rows)


def _azure_data(call: CallResult | None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = dict(extra)
    if call is not None:
        data.update(http_status=call.status, azure_request_id=call.request_id)
    return data


def _record_azure_write(
    child: FederatedCredential | RoleAssignment | None,
    *,
    status: str | None,
    action: AuditAction,
    identity_request: IdentityRequest,
    identity: Identity,
    call: CallResult | None,
    fields: dict[str, Any] | None = None,
    **data: Any,
) -> None:
    """What every Azure write leaves behind: the child row's new status (and fields), then the
    audit row with the call's HTTP status and x-ms-request-id, in the caller's transaction."""
    if child is not None and status is not None:
        values = {"status": status, **(fields or {})}
        held = getattr(_held, "updates", None)
        if held is not None:  # records_batched(): written with the phase's other records
            held.append((type(child), child.pk, values))
        else:
            type(child).objects.filter(pk=child.pk).update(**values, updated_at=timezone.now())
    audit_record(
        actor=None,
        action=action,
        identity_request=identity_request,
        identity=identity,
        data=_azure_data(call, **data),
    )


def identity_hold_outputs(*, identity: Identity, state: IdentityState) -> None:
    """The identity's ids as Azure answered them, on the instance in memory (not stored)."""
    identity.resource_id = state.resource_id
    identity.client_id = state.client_id
    identity.principal_id = state.principal_id
    identity.tenant_id = state.tenant_id


@_record_atomically
def identity_record_outputs(
    *,
    identity_request: IdentityRequest,
    identity: Identity,
    state: IdentityState,
    call: CallResult,
) -> None:
    """The identity exists in Azure: store its ids (a re-PUT returns the same ones); the PUT's
    answer already put them on `identity` (identity_hold_outputs)."""
    Identity.objects.filter(pk=identity.pk).update(
        resource_id=state.resource_id,
        client_id=state.client_id,
        principal_id=state.principal_id,
        tenant_id=state.tenant_id,
        updated_at=timezone.now(),
    )
    audit_record(
        actor=None,
        action=AuditAction.AZURE_IDENTITY_CREATED
        if call.status == 201
        else AuditAction.AZURE_IDENTITY_UPDATED,
        identity_request=identity_request,
        identity=identity,
        data=_azure_data(
            call,
            resource_id=state.resource_id,
            client_id=state.client_id,
            principal_id=state.principal_id,
            tenant_id=state.tenant_id,
            tags=state.tags,
        ),
    )


@_record_atomically
def identity_record_tags(
    *, identity_request: IdentityRequest, identity: Identity, state: IdentityState, call: CallResult
) -> None:
    """Azure holds the identity's new tags (after an ownership transfer)."""
    audit_record(
        actor=None,
        action=AuditAction.AZURE_IDENTITY_UPDATED,
        identity_request=identity_request,
        identity=identity,
        data=_azure_data(call, resource_id=state.resource_id, tags=state.tags),
    )


@_record_atomically
def fic_record_active(
    *, identity_request: IdentityRequest, fic: FederatedCredential, call: CallResult
) -> None:
    _record_azure_write(
        fic,
        status=ChildStatus.ACTIVE,
        action=AuditAction.AZURE_FIC_CREATED
        if call.status == 201
        else AuditAction.AZURE_FIC_UPDATED,
        identity_request=identity_request,
        identity=fic.identity,
        call=call,
        name=fic.name,
        issuer=fic.issuer,
        subject=fic.subject,
        audience=fic.audience,
    )


@_record_atomically
def role_assignment_record_active(
    *,
    identity_request: IdentityRequest,
    assignment: RoleAssignment,
    state: RoleAssignmentState,
    call: CallResult | None,
) -> None:
    if call is None:  # RoleAssignmentExists: the same grant, made outside the portal
        action = AuditAction.AZURE_ROLE_ASSIGNMENT_ADOPTED
    elif call.status == 201:
        action = AuditAction.AZURE_ROLE_ASSIGNMENT_CREATED
    else:
        action = AuditAction.AZURE_ROLE_ASSIGNMENT_UPDATED
    _record_azure_write(
        assignment,
        status=ChildStatus.ACTIVE,
        fields={"name": state.name, "azure_id": state.id},
        action=action,
        identity_request=identity_request,
        identity=assignment.identity,
        call=call,
        name=state.name,
        role=assignment.role.name,
        role_definition_guid=assignment.role.role_definition_guid,
        scope=assignment.scope,
    )


@transaction.atomic
def role_assignment_record_refused(
    *,
    identity_request: IdentityRequest,
    assignment: RoleAssignment,
    reason: str,
    returned_scope: str = "",
) -> None:
    """The engine would not send (or accept) this assignment's scope; the step fails after."""
    _record_azure_write(
        None,
        status=None,
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_REFUSED,
        identity_request=identity_request,
        identity=assignment.identity,
        call=None,
        role=assignment.role.name,
        scope=assignment.scope,
        returned_scope=returned_scope,
        reason=reason,
    )


@transaction.atomic
def role_assignment_record_schedule_fallback(
    *, identity_request: IdentityRequest, assignment: RoleAssignment, error: GatewayError
) -> None:
    """Azure refused the time-bound assignment by policy; a plain one is made instead."""
    _record_azure_write(
        None,
        status=None,
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_SCHEDULE_FALLBACK,
        identity_request=identity_request,
        identity=assignment.identity,
        call=None,
        role=assignment.role.name,
        scope=assignment.scope,
        expires_at=assignment.expires_at.isoformat() if assignment.expires_at else None,
        code=error.code,
        reason=error.describe(),
    )


def renewing_role_assignments(
    *, identity_request: IdentityRequest, identity: Identity
) -> list[RoleAssignment]:
    """The live assignments a change renews (a new end date on a held role): those whose end
    Azure enforces too when AZURE_TIME_BOUND_ASSIGNMENTS is on."""
    renewed = identity_request.roles.filter(change=RoleChange.RENEW).values_list("role_id", "scope")
    live = identity.role_assignments.filter(
        status=ChildStatus.ACTIVE, expires_at__isnull=False
    ).select_related("role")
    wanted = {(role_id, scope.lower()) for role_id, scope in renewed}
    return [ra for ra in live if (ra.role_id, ra.scope.lower()) in wanted]


def role_assignment_record_extended(
    *,
    identity_request: IdentityRequest,
    assignment: RoleAssignment,
    request_type: str,
    ends_at: datetime,
    call: CallResult | None,
) -> None:
    """Azure ends the assignment at `ends_at` now (AdminExtend, or AdminRenew once it had
    ended); `expires_at` stays the portal's approved end (the sweep's)."""
    _record_azure_write(
        None,
        status=None,
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_EXTENDED,
        identity_request=identity_request,
        identity=assignment.identity,
        call=call,
        name=assignment.name,
        role=assignment.role.name,
        scope=assignment.scope,
        request_type=request_type,
        azure_ends_at=ends_at.isoformat(),
        expires_at=assignment.expires_at.isoformat() if assignment.expires_at else None,
    )


def role_assignment_record_not_extended(
    *, identity_request: IdentityRequest, assignment: RoleAssignment, error: GatewayError
) -> None:
    """Azure holds nothing time-bound to extend (a plain assignment, made when a policy
    refused the schedule or before the setting was on), or a policy refused the extension: the
    portal's sweep alone removes the role at its new end."""
    _record_azure_write(
        None,
        status=None,
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_NOT_EXTENDED,
        identity_request=identity_request,
        identity=assignment.identity,
        call=None,
        name=assignment.name,
        role=assignment.role.name,
        scope=assignment.scope,
        expires_at=assignment.expires_at.isoformat() if assignment.expires_at else None,
        code=error.code,
        reason=error.describe(),
    )


@_record_atomically
def role_assignment_record_removed(
    *, identity_request: IdentityRequest, assignment: RoleAssignment, call: CallResult | None
) -> None:
    _record_azure_write(
        assignment,
        status=ChildStatus.REMOVED,
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_DELETED,
        identity_request=identity_request,
        identity=assignment.identity,
        call=call,
        name=assignment.name,
        role=assignment.role.name,
        scope=assignment.scope,
    )


@_record_atomically
def fic_record_removed(
    *, identity_request: IdentityRequest, fic: FederatedCredential, call: CallResult | None
) -> None:
    _record_azure_write(
        fic,
        status=ChildStatus.REMOVED,
        action=AuditAction.AZURE_FIC_DELETED,
        identity_request=identity_request,
        identity=fic.identity,
        call=call,
        name=fic.name,
        subject=fic.subject,
    )


@_record_atomically
def identity_record_deleted(
    *, identity_request: IdentityRequest, identity: Identity, call: CallResult
) -> None:
    _record_azure_write(
        None,
        status=None,
        action=AuditAction.AZURE_IDENTITY_DELETED,
        identity_request=identity_request,
        identity=identity,
        call=call,
        resource_id=identity.resource_id,
        name=identity.name,
    )


@_record_atomically
def extra_assignment_record_removed(
    *,
    identity_request: IdentityRequest,
    identity: Identity,
    finding: dict[str, Any],
    call: CallResult,
) -> None:
    _record_azure_write(
        None,
        status=None,
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_DELETED_EXTRA,
        identity_request=identity_request,
        identity=identity,
        call=call,
        scope=finding["scope"],
        name=finding["name"],
    )


# --- actions people take (API / UI) -----------------------------------------------------------


@transaction.atomic
def verification_enqueue(*, identity_request: IdentityRequest, actor: Any) -> None:
    """Ask for a token-exchange check of a ready request; the worker runs it after commit."""

    if not may_act_for_team(actor, identity_request.team_id):
        raise PermissionDeniedError("Only the team, approvers or admins can verify a request.")
    if identity_request.kind == RequestKind.DECOMMISSION:
        raise ConflictError("A decommission request has no federation to verify.")
    identity = identity_request.identity
    if identity is not None and identity.status in {
        IdentityStatus.DECOMMISSIONING,
        IdentityStatus.DECOMMISSIONED,
    }:
        # Refused at once (a stale form, an API call): the worker would find no federated
        # credential and the page would wait for a result that never comes.
        raise ConflictError(
            f"identity {identity.name} is {identity.status}: its federated credentials and "
            "role assignments are removed in Azure, so there is no federation to verify."
        )
    if identity_request.kind == RequestKind.CHANGE_ROLES:
        raise ConflictError(
            "A change of roles adds no federation to verify; verify a request that federated "
            "one of the identity's ServiceAccounts."
        )
    if identity_request.status != RequestStatus.READY:
        raise ConflictError(
            f"request {identity_request.pk} is {identity_request.status}; only ready requests "
            "can be verified."
        )
    audit_record(
        actor=actor,
        action=AuditAction.VERIFICATION_REQUESTED,
        identity_request=identity_request,
        identity=identity_request.identity,
    )
    pk = identity_request.pk
    transaction.on_commit(lambda: enqueue(Work.VERIFY, pk))


@transaction.atomic
def identity_repair_enqueue(*, identity: Identity, actor: Any) -> None:
    """Re-run reconcile for a ready identity (after drift); the worker runs it after commit."""

    if not may_act_for_team(actor, identity.team_id):
        raise PermissionDeniedError("Only the team, approvers or admins can repair an identity.")
    if identity.status != IdentityStatus.READY:
        raise ConflictError(
            f"identity {identity.name} is {identity.status}; only ready identities can be "
            "repaired (retry a failed request instead)."
        )
    audit_record(
        actor=actor,
        action=AuditAction.IDENTITY_REPAIR_REQUESTED,
        identity=identity,
        data={"drift_state": identity.drift_state, "drift": identity.drift_details},
    )
    pk = identity.pk
    transaction.on_commit(lambda: enqueue(Work.REPAIR, pk))


@transaction.atomic
def service_account_record_released(
    *,
    identity_request: IdentityRequest,
    namespace: str,
    service_account: str,
    annotation_removed: bool,
) -> bool:
    """Record that the portal withdrew what it had applied to a ServiceAccount of a decommissioned
    identity; False (nothing written) when it was recorded before (a redelivered task)."""
    identity = identity_request.identity
    recorded = AuditEvent.objects.filter(
        action=AuditAction.KUBE_SERVICE_ACCOUNT_RELEASED,
        identity=identity,
        data__namespace=namespace,
        data__service_account=service_account,
    )
    if recorded.exists():
        return False
    audit_record(
        actor=None,
        action=AuditAction.KUBE_SERVICE_ACCOUNT_RELEASED,
        identity_request=identity_request,
        identity=identity,
        data={
            "namespace": namespace,
            "service_account": service_account,
            "annotation_removed": annotation_removed,
        },
    )
    return True
