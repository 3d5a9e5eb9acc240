"""The reconcile engine: make Azure match what the database says, step by step, idempotently.

One engine serves first provisioning, retries after a crash, repair and decommission. Names are
deterministic, every write is a PUT or DELETE of a named resource, and steps already recorded as
done are skipped, so running it twice (or after kill -9) never creates a second anything.
The critical path is two ARM round trips: the identity, then its FICs and all role assignments
concurrently (FIC writes on one identity serialized across workers by a lock).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from django.db import close_old_connections, connections

from identities.errors import ConflictError
from identities.models import FederatedCredential, Identity, IdentityRequest, RoleAssignment
from identities.validators import FIC_LIMIT_PER_IDENTITY
from provisioning import services
from provisioning.azure import AzureGateway, get_gateway
from provisioning.errors import GatewayError, PermanentError
from provisioning.locks import serialized
from provisioning.steps import run_step, step_is_done, steps_mark_done, steps_plan

logger = logging.getLogger(__name__)

# uuid5 namespace for role assignment names: name = uuid5(scope | principal | role definition).
ROLE_ASSIGNMENT_NAMESPACE = uuid.UUID("6f1c2d3e-9a4b-5c6d-8e7f-0a1b2c3d4e5f")
MAX_PARALLEL_WRITES = 16


def role_assignment_name(*, scope: str, principal_id: str, role_guid: str) -> str:
    """Deterministic GUID, so a retry PUTs the same assignment instead of creating another."""
    key = f"{scope.lower()}|{principal_id.lower()}|{role_guid.lower()}"
    return str(uuid.uuid5(ROLE_ASSIGNMENT_NAMESPACE, key))


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """One long-lived pool per process (created after a prefork worker forks): its threads keep
    their database connections between runs, as CONN_MAX_AGE allows."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=MAX_PARALLEL_WRITES, thread_name_prefix="reconcile"
            )
        return _pool


def pool_shutdown() -> None:
    """Close every pool thread's DB connections and stop the pool (tests, before dropping the
    test database). A barrier makes each thread run exactly one closing task."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    threads = len(pool._threads)
    if threads:
        barrier = threading.Barrier(threads)

        def close() -> None:
            barrier.wait(timeout=30)
            connections.close_all()

        for future in [pool.submit(close) for _ in range(threads)]:
            future.result(timeout=60)
    pool.shutdown(wait=True)


def _in_thread(function: Callable[[], Any]) -> Callable[[], Any]:
    """Pool threads reuse their DB connections; drop those past CONN_MAX_AGE or broken."""

    def run() -> Any:
        close_old_connections()
        try:
            return function()
        finally:
            close_old_connections()

    return run


def _run_concurrently(tasks: Sequence[Callable[[], Any]]) -> list[GatewayError]:
    """Run every task, wait for all of them, and return the gateway errors they raised."""
    if not tasks:
        return []
    errors: list[GatewayError] = []
    futures = [_executor().submit(_in_thread(task)) for task in tasks]
    for future in futures:
        error = future.exception()
        if isinstance(error, GatewayError):
            errors.append(error)
        elif error is not None:
            raise error
    return errors


def reconcile_request(identity_request_id: int) -> None:
    """Drive one approved request to `ready` (or `failed` with last_error); safe to rerun."""
    identity_request = services.request_claim(identity_request_id=identity_request_id)
    if identity_request is None:
        return
    try:
        if identity_request.kind == IdentityRequest.Kind.DECOMMISSION:
            decommission(identity_request)
        else:
            provision(identity_request)
    except GatewayError as error:
        logger.warning("request %s failed: %s", identity_request.pk, error.describe())
        services.request_fail(identity_request=identity_request, error=error)
        return
    try:
        services.request_complete(identity_request=identity_request)
    except ConflictError:
        # Another run of the same request finished first: nothing left to do.
        logger.info("request %s was completed by another run", identity_request.pk)


def provision(identity_request: IdentityRequest, *, gateway: AzureGateway | None = None) -> None:
    gateway = gateway or get_gateway()
    identity = services.target_identity(identity_request=identity_request)
    fics = list(services.pending_fics(identity_request=identity_request, identity=identity))
    assignments = list(services.pending_role_assignments(identity=identity))
    steps_plan(
        identity_request=identity_request,
        steps=[("identity", f"Managed identity {identity.name}")]
        + [(f"fic:{fic.name}", f"Federated credential {fic.subject}") for fic in fics]
        + [(f"role:{ra.pk}", f"Role {ra.role.name} on {ra.scope}") for ra in assignments],
    )
    _close_recorded_steps(identity_request, identity)
    ensure_identity(identity_request, identity, gateway)
    identity.refresh_from_db()
    errors = _run_concurrently(
        [(lambda fic=fic: ensure_fic(identity_request, identity, fic, gateway)) for fic in fics]
        + [
            (lambda ra=ra: ensure_role_assignment(identity_request, identity, ra, gateway))
            for ra in assignments
        ]
    )
    if errors:
        raise _combined(errors)


def _close_recorded_steps(identity_request: IdentityRequest, identity: Identity) -> None:
    """A run killed after recording a write on its row but before closing the step left the
    step `running`; this run skips that row (no longer pending), so close the step here."""
    steps_mark_done(
        identity_request=identity_request,
        keys=services.recorded_step_keys(identity_request=identity_request, identity=identity),
    )


def _combined(errors: list[GatewayError]) -> GatewayError:
    if len(errors) == 1:
        return errors[0]
    first = errors[0]
    message = "; ".join(error.describe() for error in errors)
    return type(first)(
        f"{len(errors)} steps failed: {message}", code=first.code, request_id=first.request_id
    )


def ensure_identity(
    identity_request: IdentityRequest,
    identity: Identity,
    gateway: AzureGateway,
    *,
    key: str = "identity",
    force: bool = False,
) -> None:
    if (
        not force
        and step_is_done(identity_request=identity_request, key=key)
        and identity.principal_id
    ):
        return

    def put() -> tuple[Any, str]:
        state, call = gateway.ensure_identity(
            subscription_id=identity.subscription_id,
            resource_group=identity.resource_group,
            name=identity.name,
            location=identity.location,
            tags=identity.tags,
        )
        services.identity_record_outputs(
            identity_request=identity_request, identity=identity, state=state, call=call
        )
        return state, call.request_id

    run_step(
        identity_request=identity_request,
        key=key,
        label=f"Managed identity {identity.name}",
        operation=put,
    )


def ensure_fic(
    identity_request: IdentityRequest,
    identity: Identity,
    fic: FederatedCredential,
    gateway: AzureGateway,
    *,
    key_prefix: str = "",
) -> None:
    def put() -> tuple[Any, str]:
        # Azure refuses concurrent FIC writes on one identity: serialize across all workers.
        with serialized(identity.resource_id):
            services.fic_check_limit(identity=identity, fic=fic)
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
        services.fic_record_active(identity_request=identity_request, fic=fic, call=call)
        return state, call.request_id

    run_step(
        identity_request=identity_request,
        key=f"{key_prefix}fic:{fic.name}",
        label=f"Federated credential {fic.subject}",
        operation=put,
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


def ensure_role_assignment(
    identity_request: IdentityRequest,
    identity: Identity,
    assignment: RoleAssignment,
    gateway: AzureGateway,
    *,
    key_prefix: str = "",
) -> None:
    name = role_assignment_name(
        scope=assignment.scope,
        principal_id=identity.principal_id,
        role_guid=assignment.role.role_definition_guid,
    )

    def put() -> tuple[Any, str]:
        state, call = gateway.ensure_role_assignment(
            scope=assignment.scope,
            name=name,
            role_guid=assignment.role.role_definition_guid,
            principal_id=identity.principal_id,
        )
        if state.principal_id.lower() != identity.principal_id.lower():
            raise PermanentError(
                f"role assignment {name} on {assignment.scope} belongs to another principal",
                code="RoleAssignmentMismatch",
            )
        services.role_assignment_record_active(
            identity_request=identity_request, assignment=assignment, state=state, call=call
        )
        return state, call.request_id if call else ""

    run_step(
        identity_request=identity_request,
        key=f"{key_prefix}role:{assignment.pk}",
        label=f"Role {assignment.role.name} on {assignment.scope}",
        operation=put,
    )


def decommission(identity_request: IdentityRequest, *, gateway: AzureGateway | None = None) -> None:
    """Role assignments, then FICs, then the identity; each delete idempotent (gone is done)."""
    gateway = gateway or get_gateway()
    identity = services.target_identity(identity_request=identity_request)
    assignments = list(services.removing_role_assignments(identity=identity))
    fics = list(services.removing_fics(identity=identity))
    steps_plan(
        identity_request=identity_request,
        steps=[
            (f"delete-role:{ra.pk}", f"Remove role {ra.role.name} on {ra.scope}")
            for ra in assignments
        ]
        + [(f"delete-fic:{fic.name}", f"Remove federated credential {fic.subject}") for fic in fics]
        + [("delete-identity", f"Delete managed identity {identity.name}")],
    )
    _close_recorded_steps(identity_request, identity)
    # Role assignments first: once the identity is gone they can no longer be traced to it.
    errors = _run_concurrently(
        [partial(_delete_role_assignment, identity_request, ra, gateway) for ra in assignments]
    )
    if errors:
        raise _combined(errors)
    for fic in fics:
        _delete_fic(identity_request, identity, fic, gateway)

    def delete_identity() -> tuple[None, str]:
        call = gateway.delete_identity(
            subscription_id=identity.subscription_id,
            resource_group=identity.resource_group,
            name=identity.name,
        )
        services.identity_record_deleted(
            identity_request=identity_request, identity=identity, call=call
        )
        return None, call.request_id

    run_step(
        identity_request=identity_request,
        key="delete-identity",
        label=f"Delete managed identity {identity.name}",
        operation=delete_identity,
    )


def _delete_role_assignment(
    identity_request: IdentityRequest, assignment: RoleAssignment, gateway: AzureGateway
) -> None:
    def delete() -> tuple[None, str]:
        # A name is known once the assignment was created; before that there is nothing to delete.
        call = (
            gateway.delete_role_assignment(scope=assignment.scope, name=assignment.name)
            if assignment.name
            else None
        )
        services.role_assignment_record_removed(
            identity_request=identity_request, assignment=assignment, call=call
        )
        return None, call.request_id if call else ""

    run_step(
        identity_request=identity_request,
        key=f"delete-role:{assignment.pk}",
        label=f"Remove role {assignment.role.name} on {assignment.scope}",
        operation=delete,
    )


def _delete_fic(
    identity_request: IdentityRequest,
    identity: Identity,
    fic: FederatedCredential,
    gateway: AzureGateway,
) -> None:
    def delete() -> tuple[None, str]:
        with serialized(identity.resource_id):
            call = gateway.delete_fic(
                subscription_id=identity.subscription_id,
                resource_group=identity.resource_group,
                identity_name=identity.name,
                name=fic.name,
            )
        services.fic_record_removed(identity_request=identity_request, fic=fic, call=call)
        return None, call.request_id if call else ""

    run_step(
        identity_request=identity_request,
        key=f"delete-fic:{fic.name}",
        label=f"Remove federated credential {fic.subject}",
        operation=delete,
    )


def repair(
    origin: IdentityRequest,
    identity: Identity,
    findings: list[dict[str, Any]],
    gateway: AzureGateway,
) -> None:
    """Re-PUT the identity, every live FIC and role assignment; delete assignments made
    outside the portal. Steps are keyed `repair-…` on the identity's originating request."""
    fics = list(identity.federated_credentials.filter(status__in=services.LIVE_CHILD))
    assignments = list(
        identity.role_assignments.filter(status__in=services.LIVE_CHILD).select_related("role")
    )
    extras = [f for f in findings if f["kind"] == "role_assignment_extra"]
    ensure_identity(origin, identity, gateway, key="repair-identity", force=True)
    identity.refresh_from_db()
    errors = _run_concurrently(
        [partial(ensure_fic, origin, identity, fic, gateway, key_prefix="repair-") for fic in fics]
        + [
            partial(ensure_role_assignment, origin, identity, ra, gateway, key_prefix="repair-")
            for ra in assignments
        ]
        + [partial(_remove_extra_assignment, origin, identity, extra, gateway) for extra in extras]
    )
    if errors:
        raise _combined(errors)


def _remove_extra_assignment(
    identity_request: IdentityRequest,
    identity: Identity,
    finding: dict[str, Any],
    gateway: AzureGateway,
) -> None:
    def delete() -> tuple[None, str]:
        call = gateway.delete_role_assignment(scope=finding["scope"], name=finding["name"])
        services.extra_assignment_record_removed(
            identity_request=identity_request, identity=identity, finding=finding, call=call
        )
        return None, call.request_id

    run_step(
        identity_request=identity_request,
        key=f"repair-remove:{finding['name']}",
        label=f"Remove role assignment made outside the portal on {finding['scope']}",
        operation=delete,
    )
