"""The provisioning worker's side of a request: picked up, done, or given up on.

Idempotent where a redelivered task could call them twice; the actor is the system (None)
unless the worker names one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction

from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.lifecycle import transition, transition_request
from identities.models import (
    Identity,
    IdentityRequest,
    NotificationEvent,
    RequestKind,
    RequestStatus,
)
from identities.selectors import role_change_diff
from identities.selectors.notifications import Audience
from identities.services.notifications import notifications_record
from identities.services.requests import lock_identity_request

if TYPE_CHECKING:
    from django.contrib.auth.models import User

LAST_ERROR_MAX = 4000


@transaction.atomic
def identity_request_mark_provisioning(
    *, identity_request: IdentityRequest, actor: User | None = None
) -> IdentityRequest:
    """The worker picked the request up. Idempotent: a redelivered task finds it already
    provisioning and carries on."""
    lock_identity_request(identity_request)
    if identity_request.status == RequestStatus.PROVISIONING:
        return identity_request
    transition(identity_request, to=RequestStatus.PROVISIONING, actor=actor)
    return identity_request


@transaction.atomic
def identity_request_mark_ready(
    *,
    identity_request: IdentityRequest,
    actor: User | None = None,
    data: dict[str, Any] | None = None,
    audience: Audience | None = None,
) -> IdentityRequest:
    """Azure matches the desired state: the request is ready, a new identity ready, a
    decommissioned identity gone. Idempotent. `data` goes on the audit row (outputs, ids);
    `audience`, who the ready notice goes to when the caller read it ahead
    (`notification_audience`)."""
    lock_identity_request(identity_request)
    if identity_request.status == RequestStatus.READY:
        return identity_request
    if identity_request.identity_id is not None:
        # The identity moves too: lock it like the request (see lock_identity_request); by its
        # id, as the reload above dropped the cached one.
        identity_request.identity = Identity.objects.select_for_update(no_key=True).get(
            pk=identity_request.identity_id
        )
    ready = transition_request(
        identity_request, to=RequestStatus.READY, actor=actor, data=data or {}, last_error=""
    )
    if identity_request.kind == RequestKind.CHANGE_ROLES:
        # The identity's history reads this row: what changed, on whose request.
        audit_record(
            actor=actor,
            action=AuditAction.IDENTITY_ROLES_CHANGED,
            identity_request=identity_request,
            identity=identity_request.identity,
            data=role_change_diff(identity_request),
        )
    notifications_record(
        event=NotificationEvent.REQUEST_READY,
        occurrence=ready,
        identity_request=identity_request,
        audience=audience,
    )
    return identity_request


@transaction.atomic
def identity_request_mark_failed(
    *, identity_request: IdentityRequest, error: str, actor: User | None = None
) -> IdentityRequest:
    """Provisioning gave up (a permanent error, or retries exhausted); `error` is shown to the
    team. A new identity goes to failed with it; a decommissioning one stays decommissioning."""
    lock_identity_request(identity_request)
    error = error[:LAST_ERROR_MAX]
    if identity_request.status == RequestStatus.FAILED:
        return identity_request
    failed = transition_request(
        identity_request,
        to=RequestStatus.FAILED,
        actor=actor,
        data={"error": error},
        identity_data={"error": error},
        last_error=error,
    )
    notifications_record(
        event=NotificationEvent.REQUEST_FAILED,
        occurrence=failed,
        identity_request=identity_request,
        data={"error": error},
    )
    return identity_request
