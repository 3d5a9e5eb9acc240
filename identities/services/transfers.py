"""Writes for ownership transfers: an identity moves to another team when its team asks, the
receiving team consents and security approves. On approval the identity's team and its `team`
tag change in one transaction with the audit rows, and provisioning writes the tags to Azure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from identities import roles
from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.errors import ConflictError, DomainError, NotFoundError, PermissionDeniedError
from identities.models import (
    TRANSFER_STATUSES_OPEN,
    Identity,
    IdentityStatus,
    OwnershipTransfer,
    Team,
    TransferStatus,
)
from identities.selectors import is_team_member
from identities.tags import TAG_TEAM
from identities.work import Work, enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import User

JUSTIFICATION_MAX = 4000


def _lock(transfer: OwnershipTransfer) -> OwnershipTransfer:
    locked = (
        OwnershipTransfer.objects.select_for_update(no_key=True)
        .select_related("identity", "from_team", "to_team")
        .filter(pk=transfer.pk)
        .first()
    )
    if locked is None:
        raise NotFoundError(f"Ownership transfer {transfer.pk} was not found.")
    return locked


def _audit_data(transfer: OwnershipTransfer, **extra: object) -> dict[str, object]:
    return {
        "transfer": transfer.pk,
        "identity": transfer.identity.name,
        "from_team": transfer.from_team.name,
        "to_team": transfer.to_team.name,
        **extra,
    }


@transaction.atomic(durable=True)
def ownership_transfer_request(
    *, requester: User, identity: Identity, to_team: Team, justification: str
) -> OwnershipTransfer:
    """Ask to hand `identity` to `to_team` (a member of its current team asks)."""
    if not is_team_member(requester, identity.team_id):
        raise PermissionDeniedError(
            f"Only members of team {identity.team.name!r} can give {identity.name} away."
        )
    justification = justification.strip()
    if not justification or len(justification) > JUSTIFICATION_MAX:
        raise DomainError(f"justification: required, at most {JUSTIFICATION_MAX} characters.")
    if to_team.pk == identity.team_id:
        raise DomainError(f"to_team: {to_team.name!r} already owns {identity.name}.")
    if identity.status != IdentityStatus.READY:
        raise ConflictError(
            f"identity {identity.name} is {identity.status}; only ready identities move teams."
        )
    open_transfer = identity.transfers.filter(status__in=TRANSFER_STATUSES_OPEN).first()
    if open_transfer is not None:
        raise ConflictError(
            f"identity {identity.name} already has an open transfer (#{open_transfer.pk})."
        )
    try:
        with transaction.atomic():
            transfer = OwnershipTransfer.objects.create(
                identity=identity,
                from_team_id=identity.team_id,
                to_team=to_team,
                requested_by=requester,
                justification=justification,
            )
    except IntegrityError as exc:  # a concurrent request won the one-open constraint
        raise ConflictError(f"identity {identity.name} already has an open transfer.") from exc
    audit_record(
        actor=requester,
        action=AuditAction.TRANSFER_REQUESTED,
        identity=identity,
        data=_audit_data(transfer, justification=justification),
    )
    return transfer


@transaction.atomic(durable=True)
def ownership_transfer_consent(*, transfer: OwnershipTransfer, actor: User) -> OwnershipTransfer:
    """The receiving team agrees to take the identity over; security decides next."""
    transfer = _lock(transfer)
    if not is_team_member(actor, transfer.to_team_id):
        raise PermissionDeniedError(
            f"Only members of team {transfer.to_team.name!r} consent to receive it."
        )
    if transfer.status != TransferStatus.AWAITING_CONSENT:
        raise ConflictError(f"transfer {transfer.pk} is {transfer.get_status_display().lower()}.")
    transfer.status = TransferStatus.AWAITING_APPROVAL
    transfer.consented_by = actor
    transfer.updated_at = timezone.now()
    transfer.save(update_fields=["status", "consented_by", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditAction.TRANSFER_CONSENTED,
        identity=transfer.identity,
        data=_audit_data(transfer),
    )
    return transfer


@transaction.atomic(durable=True)
def ownership_transfer_approve(
    *, transfer: OwnershipTransfer, approver: User, comment: str = ""
) -> OwnershipTransfer:
    """Security approves a consented transfer: the identity's team and `team` tag change now,
    and Azure's tags are updated by provisioning once this commits."""
    transfer = _lock(transfer)
    if not roles.is_approver(approver):
        raise PermissionDeniedError("Only the security team (approvers) approves transfers.")
    if approver.pk in (transfer.requested_by_id, transfer.consented_by_id):
        raise PermissionDeniedError("The requester or consenter cannot also approve a transfer.")
    if transfer.status != TransferStatus.AWAITING_APPROVAL:
        raise ConflictError(
            f"transfer {transfer.pk} is {transfer.get_status_display().lower()}; security "
            "approves only once the receiving team has consented."
        )
    identity = Identity.objects.select_for_update(no_key=True).get(pk=transfer.identity_id)
    if identity.team_id != transfer.from_team_id or identity.status != IdentityStatus.READY:
        raise ConflictError(f"identity {identity.name} changed since the transfer was asked for.")
    now = timezone.now()
    transfer.status = TransferStatus.COMPLETED
    transfer.decided_by = approver
    transfer.comment = comment.strip()
    transfer.updated_at = now
    transfer.save(update_fields=["status", "decided_by", "comment", "updated_at"])
    tags = {**identity.tags, TAG_TEAM: transfer.to_team.name}
    Identity.objects.filter(pk=identity.pk).update(team=transfer.to_team, tags=tags, updated_at=now)
    audit_record(
        actor=approver,
        action=AuditAction.TRANSFER_APPROVED,
        identity=identity,
        data=_audit_data(transfer, comment=transfer.comment),
    )
    audit_record(
        actor=approver,
        action=AuditAction.IDENTITY_TEAM_CHANGED,
        identity=identity,
        data=_audit_data(transfer, tags=tags),
    )
    pk = identity.pk
    transaction.on_commit(lambda: enqueue(Work.UPDATE_TAGS, pk), robust=True)
    return transfer


@transaction.atomic(durable=True)
def ownership_transfer_reject(
    *, transfer: OwnershipTransfer, actor: User, comment: str
) -> OwnershipTransfer:
    """The receiving team declines, or security rejects; the comment says why."""
    transfer = _lock(transfer)
    if not comment.strip():
        raise DomainError("comment: a rejection says why.")
    if not (roles.is_approver(actor) or is_team_member(actor, transfer.to_team_id)):
        raise PermissionDeniedError("Only the receiving team or security rejects a transfer.")
    return _close(transfer, actor, TransferStatus.REJECTED, AuditAction.TRANSFER_REJECTED, comment)


@transaction.atomic(durable=True)
def ownership_transfer_cancel(*, transfer: OwnershipTransfer, actor: User) -> OwnershipTransfer:
    """The giving team withdraws its open transfer."""
    transfer = _lock(transfer)
    if not is_team_member(actor, transfer.from_team_id):
        raise PermissionDeniedError("Only the giving team cancels a transfer.")
    return _close(transfer, actor, TransferStatus.CANCELLED, AuditAction.TRANSFER_CANCELLED, "")


def _close(
    transfer: OwnershipTransfer,
    actor: User,
    status: TransferStatus,
    action: AuditAction,
    comment: str,
) -> OwnershipTransfer:
    if transfer.status not in TRANSFER_STATUSES_OPEN:
        raise ConflictError(f"transfer {transfer.pk} is {transfer.get_status_display().lower()}.")
    transfer.status = status
    transfer.decided_by = actor
    transfer.comment = comment.strip()
    transfer.updated_at = timezone.now()
    transfer.save(update_fields=["status", "decided_by", "comment", "updated_at"])
    audit_record(
        actor=actor,
        action=action,
        identity=transfer.identity,
        data=_audit_data(transfer, comment=transfer.comment),
    )
    return transfer
