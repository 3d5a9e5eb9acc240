"""The state machines of requests and identities, and the one helper that moves them.

`transition()` checks the map, does a compare-and-set `UPDATE … WHERE status = old` (so of two
concurrent movers exactly one wins) and writes the audit row in the same transaction. Nothing
else writes `status`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.errors import ConflictError
from identities.models import (
    AuditEvent,
    Identity,
    IdentityRequest,
    IdentityStatus,
    RequestKind,
    RequestStatus,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User
# Identity requests (every kind: new, add_service_account, decommission).
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    RequestStatus.PENDING: frozenset(
        {
            RequestStatus.APPROVED,
            RequestStatus.REJECTED,
            RequestStatus.CANCELLED,
            RequestStatus.SENT_BACK,
        }
    ),
    # Sent back for changes: the requester resubmits it (pending again) or withdraws it.
    RequestStatus.SENT_BACK: frozenset({RequestStatus.PENDING, RequestStatus.CANCELLED}),
    RequestStatus.APPROVED: frozenset({RequestStatus.PROVISIONING}),
    RequestStatus.PROVISIONING: frozenset({RequestStatus.READY, RequestStatus.FAILED}),
    # Retried, or (a change of roles only, see `cancellable`) withdrawn: the team is not stuck
    # with a failed change that holds off every other change of the identity.
    RequestStatus.FAILED: frozenset({RequestStatus.PROVISIONING, RequestStatus.CANCELLED}),
    RequestStatus.READY: frozenset(),
    RequestStatus.REJECTED: frozenset(),
    RequestStatus.CANCELLED: frozenset(),
}

# Identities, moved by the requests that concern them.
IDENTITY_TRANSITIONS: dict[str, frozenset[str]] = {
    IdentityStatus.PROVISIONING: frozenset({IdentityStatus.READY, IdentityStatus.FAILED}),
    IdentityStatus.FAILED: frozenset({IdentityStatus.PROVISIONING, IdentityStatus.DECOMMISSIONING}),
    IdentityStatus.READY: frozenset({IdentityStatus.DECOMMISSIONING}),
    IdentityStatus.DECOMMISSIONING: frozenset({IdentityStatus.DECOMMISSIONED}),
    IdentityStatus.DECOMMISSIONED: frozenset(),
}

# How an identity follows the request that concerns it: (request kind, the request's new status,
# the identity's status now) -> the identity's new status, moved first in the same transaction.
IDENTITY_FOLLOWS_REQUEST: dict[tuple[str, str, str], str] = {
    (
        RequestKind.NEW,
        RequestStatus.PROVISIONING,
        IdentityStatus.FAILED,
    ): IdentityStatus.PROVISIONING,
    (RequestKind.NEW, RequestStatus.READY, IdentityStatus.PROVISIONING): IdentityStatus.READY,
    (RequestKind.NEW, RequestStatus.FAILED, IdentityStatus.PROVISIONING): IdentityStatus.FAILED,
    (
        RequestKind.DECOMMISSION,
        RequestStatus.READY,
        IdentityStatus.DECOMMISSIONING,
    ): IdentityStatus.DECOMMISSIONED,
}

# The audit action each move writes.
REQUEST_TRANSITION_ACTIONS: dict[str, AuditAction] = {
    RequestStatus.APPROVED: AuditAction.REQUEST_APPROVED,
    RequestStatus.SENT_BACK: AuditAction.REQUEST_SENT_BACK,
    RequestStatus.PENDING: AuditAction.REQUEST_RESUBMITTED,  # only a resubmission moves here
    RequestStatus.REJECTED: AuditAction.REQUEST_REJECTED,
    RequestStatus.CANCELLED: AuditAction.REQUEST_CANCELLED,
    RequestStatus.PROVISIONING: AuditAction.REQUEST_PROVISIONING,
    RequestStatus.READY: AuditAction.REQUEST_READY,
    RequestStatus.FAILED: AuditAction.REQUEST_FAILED,
}
IDENTITY_TRANSITION_ACTIONS: dict[str, AuditAction] = {
    IdentityStatus.PROVISIONING: AuditAction.IDENTITY_PROVISIONING,
    IdentityStatus.READY: AuditAction.IDENTITY_READY,
    IdentityStatus.FAILED: AuditAction.IDENTITY_FAILED,
    IdentityStatus.DECOMMISSIONING: AuditAction.IDENTITY_DECOMMISSIONING,
    IdentityStatus.DECOMMISSIONED: AuditAction.IDENTITY_DECOMMISSIONED,
}

_MAPS: dict[type, tuple[dict[str, AuditAction], str, dict[str, frozenset[str]]]] = {
    IdentityRequest: (REQUEST_TRANSITION_ACTIONS, "request", ALLOWED_TRANSITIONS),
    Identity: (IDENTITY_TRANSITION_ACTIONS, "identity", IDENTITY_TRANSITIONS),
}


def cancellable(identity_request: IdentityRequest) -> bool:
    """Whether a request may be withdrawn now: pending or sent back (any kind), or a failed
    change of roles (a failed new identity or decommission is retried: its Azure resources exist
    in part and only the engine finishes or removes them)."""
    if identity_request.status in (RequestStatus.PENDING, RequestStatus.SENT_BACK):
        return True
    return (
        identity_request.status == RequestStatus.FAILED
        and identity_request.kind == RequestKind.CHANGE_ROLES
    )


def can_transition(instance: IdentityRequest | Identity, to: str) -> bool:
    _, _, allowed = _MAPS[type(instance)]
    return to in allowed.get(instance.status, frozenset())


# No savepoint of its own: a caller that catches its ConflictError and goes on in the same
# transaction wraps the call in its own atomic block (the identity_request_mark_* services do).
@transaction.atomic(savepoint=False)
def transition(
    instance: IdentityRequest | Identity,
    *,
    to: str,
    actor: User | None,
    identity_request: IdentityRequest | None = None,
    data: dict[str, Any] | None = None,
    **changes: Any,
) -> AuditEvent:
    """Move `instance` from its current status to `to`, set `changes` alongside, and audit it.

    `identity_request` names the request that caused an identity's change (for the audit row).
    Raises ConflictError when the map forbids the move or another writer got there first; the
    in-memory instance is updated only on success. Returns the audit row written.
    """
    actions, noun, _ = _MAPS[type(instance)]
    current = instance.status
    _require_allowed(instance, to)
    now = timezone.now()
    updated = (
        type(instance)
        .objects.filter(pk=instance.pk, status=current)
        .update(status=to, updated_at=now, **changes)
    )
    if updated != 1:
        actual = type(instance).objects.filter(pk=instance.pk).values_list("status", flat=True)
        now_status = actual.first() or "deleted"
        raise ConflictError(f"{noun} {instance.pk} is no longer {current} (now {now_status}).")
    instance.status = to
    instance.updated_at = now
    for name, value in changes.items():
        setattr(instance, name, value)
    audit_request: IdentityRequest | None
    audit_identity: Identity | None
    if isinstance(instance, IdentityRequest):
        audit_request, audit_identity = instance, instance.identity
    else:
        audit_request, audit_identity = identity_request, instance
    return audit_record(
        actor=actor,
        action=actions[to],
        identity_request=audit_request,
        identity=audit_identity,
        data={"from": current, "to": to, **(data or {})},
    )


def _require_allowed(instance: IdentityRequest | Identity, to: str) -> None:
    _, noun, allowed = _MAPS[type(instance)]
    if to not in allowed.get(instance.status, frozenset()):
        raise ConflictError(f"{noun} {instance.pk} is {instance.status}; it cannot become {to}.")


def transition_request(
    identity_request: IdentityRequest,
    *,
    to: str,
    actor: User | None,
    data: dict[str, Any] | None = None,
    identity_data: dict[str, Any] | None = None,
    **changes: Any,
) -> AuditEvent:
    """Move a request, and first its identity where IDENTITY_FOLLOWS_REQUEST says so (a retried
    new identity provisions again, a ready one is ready, a decommissioned one is gone). Returns
    the request's audit row."""
    # The request's move is checked first: a refused one must not leave the identity moved
    # and its audit row written (a caller that catches the ConflictError rolls back to its
    # savepoint, but an audit batch would keep chaining on from the dropped row).
    _require_allowed(identity_request, to)
    identity = identity_request.identity
    if identity is not None:
        follows = IDENTITY_FOLLOWS_REQUEST.get((identity_request.kind, to, identity.status))
        if follows is not None:
            transition(
                identity,
                to=follows,
                actor=actor,
                identity_request=identity_request,
                data=identity_data,
            )
    return transition(identity_request, to=to, actor=actor, data=data, **changes)
