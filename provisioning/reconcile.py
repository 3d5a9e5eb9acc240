"""The reconcile engine: make Azure match what the database says, step by step, idempotently.

One engine serves first provisioning, retries after a crash, repair, role changes (only the
delta) and decommission. Names are
deterministic, every write is a PUT or DELETE of a named resource, and steps already recorded as
done are skipped, so running it twice (or after kill -9) never creates a second anything.
The critical path is two ARM round trips: the identity, then its FICs and all role assignments
concurrently (FIC writes on one identity serialized across workers by a lock).

Each Azure write is a `Step`: its key and label (planned up front, so the page shows what is to
come) and the operation that makes the call and records its outcome through
`provisioning.services`. The step factories below are the only place a key or label is spelled.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from identities.audit import audit_batch
from identities.models import (
    FederatedCredential,
    Identity,
    IdentityRequest,
    RoleAssignment,
)
from identities.scopes import ScopeError, canonical_scope
from identities.validators import FIC_LIMIT_PER_IDENTITY
from provisioning import metrics, services
from provisioning.azure import (
    NOTHING_TO_EXTEND,
    AzureGateway,
    get_gateway,
    plain_scope,
    subscription_of,
)
from provisioning.concurrency import pool_shutdown
from provisioning.errors import GatewayError, PermanentError
from provisioning.locks import serialized
from provisioning.ratelimit import acquire_writes
from provisioning.selectors import request_approved_at
from provisioning.steps import (
    Outcome,
    Phase,
    step_is_done,
    steps_finish,
    steps_mark_done,
    steps_plan,
    steps_start,
)

__all__ = ["change_roles", "pool_shutdown", "reconcile_request", "repair", "role_assignment_name"]

logger = logging.getLogger(__name__)

# uuid5 namespace for role assignment names: name = uuid5(scope | principal | role definition).
ROLE_ASSIGNMENT_NAMESPACE = uuid.UUID("6f1c2d3e-9a4b-5c6d-8e7f-0a1b2c3d4e5f")


def role_assignment_name(*, scope: str, principal_id: str, role_guid: str) -> str:
    """Deterministic GUID, so a retry PUTs the same assignment instead of creating another."""
    key = f"{scope.lower()}|{principal_id.lower()}|{role_guid.lower()}"
    return str(uuid.uuid5(ROLE_ASSIGNMENT_NAMESPACE, key))


@dataclass(frozen=True)
class Step:
    """One recorded Azure write: `operation` calls Azure and returns (result, x-ms-request-id,
    the record): the writes of its outcome, which `run_steps` makes with the step's row."""

    identity_request: IdentityRequest
    key: str
    label: str
    operation: Callable[[], Outcome]
    # The ARM bucket its write takes a token from: (subscription, "writes" | "deletes").
    bucket: tuple[str, str] | None = None

    def run(self) -> None:
        _run_all([self])


def _plan(identity_request: IdentityRequest, steps: Iterable[Step]) -> None:
    steps_plan(identity_request=identity_request, steps=[(s.key, s.label) for s in steps])


def _start(
    steps: Iterable[Step], later: Callable[[], Iterable[Step]] | None = None
) -> Phase | None:
    """Send one phase's Azure calls at once (its steps all of one request); None if none.
    `later`: the run's next phases, whose tokens a deferral reserves with this one's."""
    steps = list(steps)
    if not steps:
        return None
    identity_request = steps[0].identity_request
    if any(step.identity_request.pk != identity_request.pk for step in steps):
        raise ValueError("one phase's steps belong to one request")
    # The phase's tokens first: an empty bucket defers the run (WritesDeferred) before anything
    # of the phase is sent, so the rerun starts the phase afresh.
    acquire_writes(
        _buckets(steps), later=(lambda: _buckets(later())) if later is not None else None
    )
    return steps_start(
        identity_request=identity_request,
        steps=[(step.key, step.label, step.operation) for step in steps],
    )


def _buckets(steps: Iterable[Step]) -> Counter[tuple[str, str]]:
    return Counter(step.bucket for step in steps if step.bucket is not None)


# What runs in the last phase's record transaction when all of its writes succeeded.
Then = Callable[[], None] | None


def _finish(phase: Phase | None, then: Then = None) -> None:
    """Wait for a phase's calls and record them (and `then`, if all succeeded, in the same
    transaction); raise their errors together."""
    if phase is None or not phase.steps:
        if then is not None:
            with audit_batch():
                then()
        return
    errors = steps_finish(phase, then)
    if errors:
        raise _combined(errors)


def _run_all(steps: Iterable[Step], then: Then = None) -> None:
    """Run the steps at once, one phase; raise their errors together once all have finished
    and been recorded."""
    _finish(_start(steps), then)


def _combined(errors: list[GatewayError]) -> GatewayError:
    if len(errors) == 1:
        return errors[0]
    first = errors[0]
    message = "; ".join(error.describe() for error in errors)
    return type(first)(
        f"{len(errors)} steps failed: {message}", code=first.code, request_id=first.request_id
    )


# --- the three paths -----------------------------------------------------------------------------


def reconcile_request(identity_request_id: int) -> None:
    """Drive one approved request to `ready` (or `failed` with last_error); safe to rerun.

    A new identity's PUT is sent first, and the claim's transaction is written while it is in
    flight; the request becomes ready in the transaction that records the run's last writes."""
    identity_request = services.request_in_flight(identity_request_id=identity_request_id)
    if identity_request is None:
        return
    gateway = get_gateway()
    identity = identity_request.identity
    in_flight = None
    try:
        in_flight = _identity_put_first(identity_request, gateway)
    finally:
        # Also when the PUT was deferred for ARM's write budget: a deferred run is provisioning.
        claimed = services.request_claim(identity_request=identity_request)
    if claimed is None:
        # Another run finished the request meanwhile; record the PUT this one sent.
        with contextlib.suppress(GatewayError):
            _finish(in_flight)
        return
    if in_flight is not None:
        # The claim reloaded the request, dropping its cached identity: keep the instance the
        # PUT in flight puts its outputs on, which the children's calls read.
        claimed.identity = identity
    identity_request = claimed
    # Read now, while a new identity's PUT is in flight (the run only waits for it): who hears
    # that the request is ready, and when it was approved (the metric). Neither is then read
    # after the last answer, where every statement delays ready. (Other kinds send nothing
    # before this; for them the two reads only move ahead of their calls.)
    audience = services.request_ready_audience(identity_request=identity_request)
    approved_at = request_approved_at(identity_request)
    ready: list[bool] = []

    def complete() -> None:
        ready.append(
            services.request_complete(identity_request=identity_request, audience=audience)
        )

    try:
        if identity_request.kind == IdentityRequest.Kind.DECOMMISSION:
            decommission(identity_request, gateway=gateway, then=complete)
        elif identity_request.kind == IdentityRequest.Kind.CHANGE_ROLES:
            change_roles(identity_request, gateway=gateway, then=complete)
        else:
            provision(identity_request, gateway=gateway, in_flight=in_flight, then=complete)
    except GatewayError as error:
        logger.warning("request %s failed: %s", identity_request.pk, error.describe())
        services.request_fail(identity_request=identity_request, error=error)
        return
    if ready != [True]:
        # Another run of the same request finished first: nothing left to do.
        logger.info("request %s was completed by another run", identity_request.pk)
        return
    _observe_ready(identity_request, approved_at)


# Kinds of request that never create the identity.
_NOT_PROVISION = (IdentityRequest.Kind.DECOMMISSION, IdentityRequest.Kind.CHANGE_ROLES)


def _identity_put_first(identity_request: IdentityRequest, gateway: AzureGateway) -> Phase | None:
    """A new identity's PUT, sent before anything else of its run; None if there is none to
    send (another kind of request, or an identity whose outputs an earlier run stored)."""
    identity = identity_request.identity
    if identity_request.kind in _NOT_PROVISION or identity is None or identity.principal_id:
        return None
    return _start(
        [put_identity(identity_request, identity, gateway)],
        later=lambda: _child_steps(identity_request, identity, gateway),
    )


def _observe_ready(identity_request: IdentityRequest, approved_at: datetime | None) -> None:
    """Approval-to-ready time (`request_approved_at`: read while the run's calls flew)."""
    if approved_at is not None:
        seconds = (timezone.now() - approved_at).total_seconds()
        metrics.request_ready(kind=identity_request.kind, seconds=seconds)


def provision(
    identity_request: IdentityRequest,
    *,
    gateway: AzureGateway | None = None,
    in_flight: Phase | None = None,
    then: Then = None,
) -> None:
    """The identity, then its pending FICs and role assignments at once. The identity's PUT is
    sent first (`in_flight`, when the caller sent it already) and the run is planned while it
    is in flight; the children are sent as soon as it answers (its outputs are on `identity`
    in memory by then) and its record is written while they are in flight."""
    gateway = gateway or get_gateway()
    identity = services.target_identity(identity_request=identity_request)
    identity_step = put_identity(identity_request, identity, gateway)
    # A done identity step is skipped only once its outputs are stored (the children need them).
    if in_flight is None and (
        not identity.principal_id
        or not step_is_done(identity_request=identity_request, key=identity_step.key)
    ):
        in_flight = _start([identity_step])
    child_steps = _child_steps(identity_request, identity, gateway)
    _plan(identity_request, [identity_step, *child_steps])
    _close_recorded_steps(identity_request, identity)
    if in_flight is not None and not in_flight.succeeded():
        _finish(in_flight)  # records the failure and raises it; no child is sent
    try:
        children = _start(child_steps)
    except BaseException:
        # Deferred for ARM's write budget (or failed) before any child was sent: record the
        # identity first, so the rerun starts from its stored outputs rather than writing it
        # again (and needing its token again).
        _finish(in_flight)
        raise
    # Should this record fail, the children's answers go unrecorded, as a kill's would: the
    # rerun re-PUTs the identity and sends the same names again.
    _finish(in_flight)
    _finish(children, then)


def _child_steps(
    identity_request: IdentityRequest, identity: Identity, gateway: AzureGateway
) -> list[Step]:
    """A provisioning's pending FICs and role assignments, sent at once after the identity."""
    fics = list(services.pending_fics(identity_request=identity_request, identity=identity))
    assignments = services.pending_role_assignments(identity=identity)
    # The limit's count is read here, while the identity's PUT is in flight, not by each FIC's
    # call after it answers, where the query held the FIC back behind its siblings. It is the
    # same count: the phase's own credentials turn active only in its record, after its calls.
    active = services.active_fic_count(identity=identity, besides=fics) if fics else None
    return [put_fic(identity_request, identity, fic, gateway, active=active) for fic in fics] + [
        put_role_assignment(identity_request, identity, ra, gateway) for ra in assignments
    ]


def change_roles(
    identity_request: IdentityRequest, *, gateway: AzureGateway | None = None, then: Then = None
) -> None:
    """Only the delta, all at once: delete the assignments the change removes, put the ones it
    adds. The identity and its credentials are not written, so its client id stays. A rerun
    (redelivery, kill -9) finds the rows it recorded closed and rewrites only the rest: the
    names are deterministic, a PUT of an existing assignment is success, a gone one is done.

    With AZURE_TIME_BOUND_ASSIGNMENTS on, each renewed role's end is moved in Azure too
    (`extend_role_assignment`).

    Drift is merged, not repaired first: a removed role already gone from Azure is done, an
    added one made outside the portal is adopted; drift on roles the change does not touch is
    left to the drift check and repair (the change writes nothing else)."""
    gateway = gateway or get_gateway()
    identity = services.target_identity(identity_request=identity_request)
    steps = [
        delete_role_assignment(identity_request, ra, gateway)
        for ra in services.removing_role_assignments(identity=identity)
    ] + [
        put_role_assignment(identity_request, identity, ra, gateway)
        for ra in services.pending_role_assignments(identity=identity)
    ]
    if settings.AZURE_TIME_BOUND_ASSIGNMENTS:
        # A renewal's new end is the portal's from approval on; Azure enforces it too.
        steps += [
            extend_role_assignment(identity_request, identity, ra, gateway)
            for ra in services.renewing_role_assignments(
                identity_request=identity_request, identity=identity
            )
        ]
    _plan(identity_request, steps)
    _close_recorded_steps(identity_request, identity)
    _run_all(steps, then)


def decommission(
    identity_request: IdentityRequest, *, gateway: AzureGateway | None = None, then: Then = None
) -> None:
    """Role assignments, then FICs, then the identity; each delete idempotent (gone is done)."""
    gateway = gateway or get_gateway()
    identity = services.target_identity(identity_request=identity_request)
    role_steps = [
        delete_role_assignment(identity_request, ra, gateway)
        for ra in services.removing_role_assignments(identity=identity)
    ]
    fic_steps = [
        delete_fic(identity_request, identity, fic, gateway)
        for fic in services.removing_fics(identity=identity)
    ]
    identity_step = delete_identity(identity_request, identity, gateway)
    _plan(identity_request, [*role_steps, *fic_steps, identity_step])
    _close_recorded_steps(identity_request, identity)
    # Role assignments first: once the identity is gone they can no longer be traced to it.
    _run_all(role_steps)
    for step in fic_steps:  # serialized per identity anyway
        step.run()
    _run_all([identity_step], then)


def repair(
    origin: IdentityRequest,
    identity: Identity,
    findings: list[dict[str, Any]],
    gateway: AzureGateway,
) -> None:
    """Re-PUT the identity, every live FIC and role assignment; delete assignments made
    outside the portal. Steps are keyed `repair-…` on the identity's originating request."""
    fics = identity.federated_credentials.filter(status__in=services.LIVE_CHILD)
    assignments = identity.role_assignments.filter(status__in=services.LIVE_CHILD).select_related(
        "role"
    )
    extras = [f for f in findings if f["kind"] == "role_assignment_extra"]
    put_identity(origin, identity, gateway, key="repair-identity").run()
    identity.refresh_from_db()
    _run_all(
        [put_fic(origin, identity, fic, gateway, key_prefix="repair-") for fic in fics]
        + [
            put_role_assignment(origin, identity, ra, gateway, key_prefix="repair-")
            for ra in assignments
        ]
        + [delete_extra_assignment(origin, identity, extra, gateway) for extra in extras]
    )


def revoke(identity: Identity, *, gateway: AzureGateway | None = None) -> None:
    """Delete the role assignments an access review marked `removing`; the identity and its
    credentials stay. Each delete is idempotent (gone is done); steps go on the origin request."""
    gateway = gateway or get_gateway()
    origin = services.origin_request(identity=identity)
    _run_all(
        delete_role_assignment(origin, assignment, gateway)
        for assignment in services.removing_role_assignments(identity=identity)
    )


def update_tags(identity: Identity, *, gateway: AzureGateway | None = None) -> None:
    """Write the identity's tags to Azure (PATCH), as the portal holds them now."""
    gateway = gateway or get_gateway()
    origin = services.origin_request(identity=identity)

    def patch() -> Outcome:
        state, call = gateway.update_identity_tags(
            subscription_id=identity.subscription_id,
            resource_group=identity.resource_group,
            name=identity.name,
            tags=dict(identity.tags),
        )
        return (
            None,
            call.request_id,
            lambda: services.identity_record_tags(
                identity_request=origin, identity=identity, state=state, call=call
            ),
        )

    Step(
        origin,
        f"tags:{identity.team_id}",
        f"Update tags of {identity.name}",
        patch,
        bucket=(identity.subscription_id, "writes"),
    ).run()


def _close_recorded_steps(identity_request: IdentityRequest, identity: Identity) -> None:
    """A run killed after recording a write on its row but before closing the step left the
    step `running`; this run skips that row (no longer pending), so close the step here."""
    steps_mark_done(
        identity_request=identity_request,
        keys=services.recorded_step_keys(identity_request=identity_request, identity=identity),
    )


# --- the steps -----------------------------------------------------------------------------------


def put_identity(
    identity_request: IdentityRequest,
    identity: Identity,
    gateway: AzureGateway,
    *,
    key: str = "identity",
) -> Step:
    def put() -> Outcome:
        state, call = gateway.ensure_identity(
            subscription_id=identity.subscription_id,
            resource_group=identity.resource_group,
            name=identity.name,
            location=identity.location,
            tags=identity.tags,
        )
        # The children's calls read these as soon as the PUT answers, before its record.
        services.identity_hold_outputs(identity=identity, state=state)
        return (
            state,
            call.request_id,
            lambda: services.identity_record_outputs(
                identity_request=identity_request, identity=identity, state=state, call=call
            ),
        )

    return Step(
        identity_request,
        key,
        f"Managed identity {identity.name}",
        put,
        bucket=(identity.subscription_id, "writes"),
    )


def put_fic(
    identity_request: IdentityRequest,
    identity: Identity,
    fic: FederatedCredential,
    gateway: AzureGateway,
    *,
    key_prefix: str = "",
    active: int | None = None,
) -> Step:
    """`active`: the identity's other active credentials, when the caller counted them for the
    limit's check (`services.active_fic_count`); else the call counts them."""

    def put() -> Outcome:
        # Azure refuses concurrent FIC writes on one identity: serialize across all workers.
        with serialized(identity.resource_id):
            services.fic_check_limit(identity=identity, fic=fic, active=active)
            try:
                state, call = gateway.ensure_fic(
                    subscription_id=identity.subscription_id,
                    resource_group=identity.resource_group,
                    identity_name=identity.name,
                    name=fic.name,
                    issuer=fic.issuer,
                    subject=fic.subject,
                    audience=fic.audience,
                )
            except PermanentError as error:
                raise _fic_limit_refusal(gateway, identity, fic, error) or error from error
        return (
            state,
            call.request_id,
            lambda: services.fic_record_active(
                identity_request=identity_request, fic=fic, call=call
            ),
        )

    key = f"{key_prefix}fic:{fic.name}"
    return Step(
        identity_request,
        key,
        f"Federated credential {fic.subject}",
        put,
        bucket=(identity.subscription_id, "writes"),
    )


def _fic_limit_refusal(
    gateway: AzureGateway, identity: Identity, fic: FederatedCredential, error: PermanentError
) -> PermanentError | None:
    """Azure's refusal of a new credential, recognised as the per-identity limit by its status
    and the count of credentials, never by its text: no public source attests the body, and
    Azure may hold credentials the portal did not make (AZURE-FACTS §2.4)."""
    if error.status not in {400, 409}:
        return None
    try:
        held = gateway.list_fics(
            subscription_id=identity.subscription_id,
            resource_group=identity.resource_group,
            identity_name=identity.name,
        )
    except GatewayError:
        return None
    names = {state.name.lower() for state in held}
    if fic.name.lower() in names or len(held) < FIC_LIMIT_PER_IDENTITY:
        return None
    known = set(identity.federated_credentials.exclude(pk=fic.pk).values_list("name", flat=True))
    foreign = sorted(state.name for state in held if state.name not in known)
    return PermanentError(
        f"identity {identity.name} already holds {len(held)} federated credentials in Azure, "
        f"Azure's limit per identity ({FIC_LIMIT_PER_IDENTITY})"
        + (f"; not made by the portal: {', '.join(foreign[:5])}" if foreign else ""),
        code="FederatedIdentityCredentialLimit",
        status=error.status,
        request_id=error.request_id,
    )


def put_role_assignment(
    identity_request: IdentityRequest,
    identity: Identity,
    assignment: RoleAssignment,
    gateway: AzureGateway,
    *,
    key_prefix: str = "",
) -> Step:
    def refuse(reason: str, returned_scope: str = "") -> PermanentError:
        services.role_assignment_record_refused(
            identity_request=identity_request,
            assignment=assignment,
            reason=reason,
            returned_scope=returned_scope,
        )
        return PermanentError(reason, code="UnsafeScope")

    def put() -> Outcome:
        # Belt and braces: what is sent is byte for byte the approved scope in its one spelling.
        try:
            canonical = canonical_scope(assignment.scope)
        except ScopeError as error:
            raise refuse(f"Scope {assignment.scope[:200]!r} {error.explanation}") from None
        if canonical != assignment.scope:
            raise refuse(
                f"Scope {assignment.scope!r} is not in its canonical spelling {canonical!r}"
            )
        # The principal exists by now (the identity step ran first), so the name is known.
        name = role_assignment_name(
            scope=assignment.scope,
            principal_id=identity.principal_id,
            role_guid=assignment.role.role_definition_guid,
        )
        state, call = _ensure_assignment(identity_request, identity, assignment, name, gateway)
        if state.principal_id.lower() != identity.principal_id.lower():
            raise PermanentError(
                f"role assignment {name} on {assignment.scope} belongs to another principal",
                code="RoleAssignmentMismatch",
            )
        if state.scope.lower() != assignment.scope.lower():
            raise refuse(
                f"Azure answered with scope {state.scope!r} for the assignment on "
                f"{assignment.scope!r}",
                returned_scope=state.scope,
            )
        return (
            state,
            call.request_id if call else "",
            lambda: services.role_assignment_record_active(
                identity_request=identity_request, assignment=assignment, state=state, call=call
            ),
        )

    key = f"{key_prefix}role:{assignment.pk}"
    label = f"Role {assignment.role.name} on {assignment.scope}"
    return Step(identity_request, key, label, put, bucket=_scope_bucket(assignment.scope, "writes"))


def _scope_bucket(scope: str, kind: str) -> tuple[str, str] | None:
    """The ARM bucket a write at `scope` draws on; None for a scope that is never sent (the
    step itself refuses it, with its audit row)."""
    try:
        return subscription_of(plain_scope(scope)), kind
    except PermanentError:
        return None


# Azure's answer when a role management policy (or Azure Policy) refuses a schedule request.
SCHEDULE_REFUSED = "RoleAssignmentRequestPolicyValidationFailed"


def _ensure_assignment(
    identity_request: IdentityRequest,
    identity: Identity,
    assignment: RoleAssignment,
    name: str,
    gateway: AzureGateway,
) -> tuple[Any, Any]:
    """A role with an end date is time-bound in Azure too when AZURE_TIME_BOUND_ASSIGNMENTS is
    on (Azure ends it even if the portal is down); refused by policy, it falls back to a plain
    assignment, audited. The portal's sweep removes it at its end in both modes."""
    role_guid = assignment.role.role_definition_guid
    if settings.AZURE_TIME_BOUND_ASSIGNMENTS and assignment.expires_at is not None:
        # Clamped to the scope's policy maximum (a renewal extends it, a repair writes a new
        # schedule in between).
        end = _time_bound_end(assignment, gateway)
        try:
            return gateway.ensure_time_bound_role_assignment(
                scope=assignment.scope,
                name=name,
                role_guid=role_guid,
                principal_id=identity.principal_id,
                end=end,
            )
        except PermanentError as error:
            if error.code != SCHEDULE_REFUSED:
                raise
            services.role_assignment_record_schedule_fallback(
                identity_request=identity_request, assignment=assignment, error=error
            )
    return gateway.ensure_role_assignment(
        scope=assignment.scope, name=name, role_guid=role_guid, principal_id=identity.principal_id
    )


def _time_bound_end(assignment: RoleAssignment, gateway: AzureGateway) -> datetime:
    """The end Azure is asked to enforce: the approved one, clamped to the scope's policy
    maximum (Azure then ends it no later than the policy allows and the portal's sweep ends
    the rest at the approved end)."""
    assert assignment.expires_at is not None  # noqa: S101 - callers pass time-bound ones only
    maximum = gateway.time_bound_maximum(
        scope=assignment.scope, role_guid=assignment.role.role_definition_guid
    )
    if maximum is None:
        return assignment.expires_at
    return min(assignment.expires_at, timezone.now() + maximum)


def extend_role_assignment(
    identity_request: IdentityRequest,
    identity: Identity,
    assignment: RoleAssignment,
    gateway: AzureGateway,
) -> Step:
    """A renewal in Azure: AdminExtend while the time-bound assignment is live, AdminRenew once
    Azure ended it. Nothing time-bound there to extend (a plain assignment) or a policy refusing
    it is recorded, not failed: the portal's sweep enforces the new end either way."""

    def extend() -> Outcome:
        end = _time_bound_end(assignment, gateway)
        try:
            request_type, call = gateway.extend_time_bound_role_assignment(
                scope=assignment.scope,
                name=assignment.name,
                role_guid=assignment.role.role_definition_guid,
                principal_id=identity.principal_id,
                end=end,
            )
        except PermanentError as error:
            if error.code not in {NOTHING_TO_EXTEND, SCHEDULE_REFUSED}:
                raise
            refusal = error  # `error` is unbound once the except block ends; the record runs later
            return (
                None,
                error.request_id,
                lambda: services.role_assignment_record_not_extended(
                    identity_request=identity_request, assignment=assignment, error=refusal
                ),
            )
        return (
            None,
            call.request_id if call else "",
            lambda: services.role_assignment_record_extended(
                identity_request=identity_request,
                assignment=assignment,
                request_type=request_type,
                ends_at=end,
                call=call,
            ),
        )

    label = f"Extend role {assignment.role.name} on {assignment.scope} in Azure"
    return Step(identity_request, f"extend-role:{assignment.pk}", label, extend)


def delete_role_assignment(
    identity_request: IdentityRequest, assignment: RoleAssignment, gateway: AzureGateway
) -> Step:
    def delete() -> Outcome:
        # A name is known once the assignment was created; before that there is nothing to delete.
        call = (
            gateway.delete_role_assignment(scope=assignment.scope, name=assignment.name)
            if assignment.name
            else None
        )
        return (
            None,
            call.request_id if call else "",
            lambda: services.role_assignment_record_removed(
                identity_request=identity_request, assignment=assignment, call=call
            ),
        )

    label = f"Remove role {assignment.role.name} on {assignment.scope}"
    # No name: never created, so nothing is sent.
    bucket = _scope_bucket(assignment.scope, "deletes") if assignment.name else None
    return Step(identity_request, f"delete-role:{assignment.pk}", label, delete, bucket=bucket)


def delete_fic(
    identity_request: IdentityRequest,
    identity: Identity,
    fic: FederatedCredential,
    gateway: AzureGateway,
) -> Step:
    def delete() -> Outcome:
        with serialized(identity.resource_id):
            call = gateway.delete_fic(
                subscription_id=identity.subscription_id,
                resource_group=identity.resource_group,
                identity_name=identity.name,
                name=fic.name,
            )
        return (
            None,
            call.request_id,
            lambda: services.fic_record_removed(
                identity_request=identity_request, fic=fic, call=call
            ),
        )

    label = f"Remove federated credential {fic.subject}"
    return Step(
        identity_request,
        f"delete-fic:{fic.name}",
        label,
        delete,
        bucket=(identity.subscription_id, "deletes"),
    )


def delete_identity(
    identity_request: IdentityRequest, identity: Identity, gateway: AzureGateway
) -> Step:
    def delete() -> Outcome:
        call = gateway.delete_identity(
            subscription_id=identity.subscription_id,
            resource_group=identity.resource_group,
            name=identity.name,
        )
        return (
            None,
            call.request_id,
            lambda: services.identity_record_deleted(
                identity_request=identity_request, identity=identity, call=call
            ),
        )

    label = f"Delete managed identity {identity.name}"
    bucket = (identity.subscription_id, "deletes")
    return Step(identity_request, "delete-identity", label, delete, bucket=bucket)


def delete_extra_assignment(
    identity_request: IdentityRequest,
    identity: Identity,
    finding: dict[str, Any],
    gateway: AzureGateway,
) -> Step:
    def delete() -> Outcome:
        call = gateway.delete_role_assignment(scope=finding["scope"], name=finding["name"])
        return (
            None,
            call.request_id,
            lambda: services.extra_assignment_record_removed(
                identity_request=identity_request, identity=identity, finding=finding, call=call
            ),
        )

    label = f"Remove role assignment made outside the portal on {finding['scope']}"
    bucket = _scope_bucket(finding["scope"], "deletes")
    return Step(identity_request, f"repair-remove:{finding['name']}", label, delete, bucket=bucket)
