"""Changes requested instead of a hard reject: an approver sends a pending request back with a
comment, its requester edits it and resubmits it as the next revision of the same request.

Sending back keeps the revision as it was (what it asked for, the decisions it had) in a
RequestRevision row; a resubmission resets the approvals, so every approver judges the new
revision afresh, and moves the request back to `pending`. Each step writes its audit row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.db import transaction

from identities import roles
from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.errors import (
    ConflictError,
    DomainError,
    PermissionDeniedError,
    PolicyViolationError,
)
from identities.lifecycle import transition
from identities.models import (
    IdentityRequest,
    NotificationEvent,
    RequestKind,
    RequestRevision,
    RequestStatus,
    Team,
)
from identities.policy import RoleDraft, evaluate_request
from identities.selectors import (
    identity_request_content,
    identity_request_draft,
    identity_request_policy,
    policy_context_for,
    revision_changes,
)
from identities.services.notifications import notifications_record
from identities.services.requests import (
    lock_identity_request,
    owner_team_to_act_for,
    write_change_rows,
    write_requested_roles,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@transaction.atomic(durable=True)
def identity_request_send_back(
    *, identity_request: IdentityRequest, approver: User, comment: str
) -> IdentityRequest:
    """Send a pending request back to its requester with a comment saying what to change.
    Approvers may, and members of a team that owns one of its scopes; never the requester."""
    if not comment.strip():
        raise DomainError(
            "Sending a request back needs a comment telling the requester what to change."
        )
    lock_identity_request(identity_request)
    acting_for = owner_team_to_act_for(
        identity_request, approver, list(identity_request.owner_teams.all())
    )
    if acting_for is None and not roles.is_approver(approver):
        raise PermissionDeniedError(
            "Only approvers, or members of a team that owns a scope of this request, can send "
            "it back."
        )
    if approver.pk == identity_request.requester_id:
        raise PermissionDeniedError(
            "Requesters cannot send their own requests back; edit or cancel it."
        )
    if identity_request.status != RequestStatus.PENDING:
        raise ConflictError(
            f"request {identity_request.pk} is no longer pending (now {identity_request.status})."
        )
    approvals = [
        {
            "approver": approval.approver.get_username(),
            "decision": approval.decision,
            "on_behalf_of": approval.on_behalf_of.name if approval.on_behalf_of else None,
            "comment": approval.comment,
            "created_at": approval.created_at.isoformat(),
        }
        for approval in identity_request.approvals.select_related("approver", "on_behalf_of")
    ]
    RequestRevision.objects.create(
        identity_request=identity_request,
        number=identity_request.revision,
        content=identity_request_content(identity_request),
        approvals=approvals,
        sent_back_by=approver,
        comment=comment.strip(),
    )
    sent_back = transition(
        identity_request,
        to=RequestStatus.SENT_BACK,
        actor=approver,
        data={
            "comment": comment.strip(),
            "revision": identity_request.revision,
            "on_behalf_of": acting_for.name if acting_for else None,
        },
    )
    # The requester must act: edit and resubmit.
    notifications_record(
        event=NotificationEvent.REQUEST_SENT_BACK,
        occurrence=sent_back,
        identity_request=identity_request,
        data={"actor": approver.get_username(), "comment": comment.strip()},
    )
    return identity_request


@transaction.atomic(durable=True)
def identity_request_revise(
    *,
    identity_request: IdentityRequest,
    actor: User,
    justification: str | None = None,
    is_exception: bool | None = None,
    roles_asked: Sequence[RoleDraft] | None = None,
    tags: Mapping[str, Any] | None = None,
    add: Sequence[RoleDraft] | None = None,
    remove: Sequence[RoleDraft] | None = None,
) -> IdentityRequest:
    """Edit a sent-back request (its requester only); None leaves a field as it is. A new
    identity's roles and tags, a change's roles to add and remove, and any request's
    justification and exception mark can be edited. The policy judges the edited request; on a
    violation nothing is saved. The edit becomes the next revision when resubmitted."""
    lock_identity_request(identity_request)
    if actor.pk != identity_request.requester_id:
        raise PermissionDeniedError("Only the requester can edit a request sent back to them.")
    if identity_request.status != RequestStatus.SENT_BACK:
        raise ConflictError(
            f"request {identity_request.pk} is {identity_request.status}; only a request sent "
            "back can be edited."
        )
    kind = identity_request.kind
    if (roles_asked is not None or tags is not None) and kind != RequestKind.NEW:
        raise DomainError("Roles and tags are edited on a new-identity request only.")
    if (add is not None or remove is not None) and kind != RequestKind.CHANGE_ROLES:
        raise DomainError("Roles to add and remove are edited on a change request only.")
    before = identity_request_content(identity_request)
    draft = identity_request_draft(identity_request)
    edits: dict[str, Any] = {}
    if justification is not None:
        edits["justification"] = justification
    if is_exception is not None:
        edits["is_exception"] = is_exception
    if tags is not None:
        edits["tags"] = dict(tags)
    if roles_asked is not None:
        edits["roles"] = tuple(roles_asked)
    if add is not None:
        edits["roles"] = tuple(add)
    if remove is not None:
        edits["remove"] = tuple(remove)
    draft = dataclasses.replace(draft, **edits)
    # Judged as drafted, before anything is written (the rows need roles that parse).
    result = evaluate_request(
        draft, policy_context_for(draft, exclude_request_id=identity_request.pk)
    )
    if result.violations:
        raise PolicyViolationError(result)
    fields = {
        "justification": draft.justification.strip(),
        "is_exception": draft.is_exception,
        "tags": dict(draft.tags) if kind == RequestKind.NEW else {},
    }
    IdentityRequest.objects.filter(pk=identity_request.pk).update(**fields)
    for name, value in fields.items():
        setattr(identity_request, name, value)
    if kind == RequestKind.NEW and roles_asked is not None:
        identity_request.roles.all().delete()
        write_requested_roles(identity_request, draft.roles)
    elif kind == RequestKind.CHANGE_ROLES and (add is not None or remove is not None):
        identity_request.roles.all().delete()
        identity = identity_request.identity
        assert identity is not None  # noqa: S101 - a CheckConstraint guarantees the target
        write_change_rows(identity_request, identity, add=draft.roles, remove=draft.remove)
    identity_request.owner_teams.set(Team.objects.filter(name__in=result.owner_teams))
    after = identity_request_content(identity_request)
    audit_record(
        actor=actor,
        action=AuditAction.REQUEST_REVISED,
        identity_request=identity_request,
        identity=identity_request.identity,
        data={
            "revision": identity_request.revision + 1,
            "changes": revision_changes(before, after),
            "warnings": [w.as_dict() for w in result.warnings],
        },
    )
    return identity_request


@transaction.atomic(durable=True)
def identity_request_resubmit(*, identity_request: IdentityRequest, actor: User) -> IdentityRequest:
    """Resubmit a sent-back request as its next revision: approvals reset, pending again, the
    policy re-run (a violation keeps it sent back)."""
    lock_identity_request(identity_request)
    if actor.pk != identity_request.requester_id:
        raise PermissionDeniedError("Only the requester can resubmit a request sent back to them.")
    if identity_request.status != RequestStatus.SENT_BACK:
        raise ConflictError(
            f"request {identity_request.pk} is {identity_request.status}; only a request sent "
            "back can be resubmitted."
        )
    result = identity_request_policy(identity_request)
    if result.violations:
        raise PolicyViolationError(result)
    previous = identity_request.revisions.order_by("-number").first()
    # Every approver judges the new revision afresh; the old decisions are on the revision row.
    identity_request.approvals.all().delete()
    revision = identity_request.revision + 1
    resubmitted = transition(
        identity_request,
        to=RequestStatus.PENDING,
        actor=actor,
        data={
            "revision": revision,
            "changes": revision_changes(
                previous.content if previous else {}, identity_request_content(identity_request)
            ),
        },
        revision=revision,
    )
    # A new revision waits for the approvers again, as a filing does.
    notifications_record(
        event=NotificationEvent.REQUEST_FILED,
        occurrence=resubmitted,
        identity_request=identity_request,
        data={"actor": actor.get_username(), "revision": revision},
    )
    return identity_request
