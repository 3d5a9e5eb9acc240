"""Checks of the whole audit chain: started by the schedule (Celery beat), by an operator's
`manage.py audit_verify` or from the audit page, run by a worker, and recorded with a signed
verdict so that the audit page can show it without walking a million rows on every view."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from identities import roles
from identities.audit import anchor as audit_anchor
from identities.audit.actions import CHAIN_CHECK_ACTIONS, AuditAction
from identities.audit.chain import (
    ChainReport,
    audit_verify_chain,
    chain_end,
    sign_check,
    stored_hash,
)
from identities.audit.record import audit_record
from identities.audit.selectors import audit_chain_anchor, chain_check_stale_after
from identities.errors import PermissionDeniedError
from identities.models import AuditChainCheck, ChainCheckStatus, ChainCheckTrigger
from identities.work import Work, enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def audit_chain_check_start(*, actor: User | None, trigger: str) -> tuple[AuditChainCheck, bool]:
    """Record a new running check, or hand back the one already running (True if new).

    Checks abandoned by a dead worker are closed as errors here, so one crash never keeps
    the chain from being checked again. A check requested from the audit page is audited.
    """
    if actor is not None and not roles.sees_everything(actor):
        raise PermissionDeniedError(
            "Only approvers, auditors and admins can verify the whole audit chain."
        )
    now = timezone.now()
    with transaction.atomic():
        running = list(
            AuditChainCheck.objects.select_for_update()
            .filter(status=ChainCheckStatus.RUNNING)
            .order_by("-started_at")
        )
        for check in running:
            if check.started_at >= now - chain_check_stale_after():
                return check, False
            _finish(
                check,
                status=ChainCheckStatus.ERROR,
                reason="the worker running this check stopped before it finished",
            )
        try:
            with transaction.atomic():  # a savepoint: the table admits one running check
                check = AuditChainCheck.objects.create(
                    started_at=now, trigger=trigger, requested_by=actor
                )
        except IntegrityError:
            # Another start committed its check after we looked (our insert waited for it):
            # join that one, even if its walk has finished meanwhile.
            return AuditChainCheck.objects.latest("started_at", "id"), False
        if trigger == ChainCheckTrigger.USER:
            # Asked from the audit page: audited, and run by a worker once this commits.
            audit_record(
                actor=actor, action=AuditAction.CHAIN_CHECK_REQUESTED, data={"check": check.pk}
            )
            pk = check.pk
            transaction.on_commit(lambda: _enqueue_check(pk))
        # Counted after the request's own audit row, which the walk will include.
        check.rows_expected = chain_end()
        check.save(update_fields=["rows_expected"])
    return check, True


def _enqueue_check(check_id: int) -> None:
    try:
        enqueue(Work.VERIFY_AUDIT_CHAIN, check_id)
    except Exception as error:  # the broker is down: close the check so it can be retried
        logger.exception("could not enqueue audit chain check %s", check_id)
        audit_chain_check_enqueue_failed(check_id=check_id, error=error)


def audit_chain_check_run(*, check_id: int, processes: int = 1) -> AuditChainCheck:
    """Walk the whole chain for a running check and record its signed verdict.

    Beyond the walk itself, the chain must still hold the last row the previous passed check
    verified, with the same hash: otherwise rows were removed from its end, or the chain was
    rewritten with every hash recomputed, which a walk alone cannot see.
    """
    check = AuditChainCheck.objects.get(pk=check_id)
    if check.status != ChainCheckStatus.RUNNING:  # done already (a redelivered task)
        return check
    anchor = audit_chain_anchor(before=check)
    try:
        report = audit_verify_chain(processes=processes)
    except Exception as exc:
        _finish(check, status=ChainCheckStatus.ERROR, reason=f"the walk stopped: {exc}")
        raise
    if report.ok and anchor is not None:
        report = _against_anchor(report, anchor)
    if report.ok:  # and against the checkpoints outside the database, which no one can delete
        sink = audit_anchor.anchor_verify(rows=report.rows_checked)
        if not sink.ok:
            report = ChainReport(
                False, report.rows_checked, report.last_hash, sink.broken_id, sink.reason
            )
    checkpoint = None
    if report.ok:
        # What the check verified is anchored outside the database at once; a sink that cannot
        # be written fails no check (the error is logged, the periodic anchoring tries again).
        try:
            checkpoint = audit_anchor.checkpoint_append(
                rows=report.rows_checked, head_hash=report.last_hash
            )
        except audit_anchor.AnchorError:
            logger.exception("could not anchor the audit chain for check %s", check.pk)
    _finish(
        check,
        status=ChainCheckStatus.PASSED if report.ok else ChainCheckStatus.FAILED,
        rows_checked=report.rows_checked,
        last_hash=report.last_hash,
        broken_id=report.broken_id,
        reason=report.reason,
        checkpoint=checkpoint.seq if checkpoint else None,
    )
    if not report.ok:
        logger.error(
            "audit chain check %s FAILED at row %s: %s", check.pk, report.broken_id, report.reason
        )
    return check


def _against_anchor(report: ChainReport, anchor: AuditChainCheck) -> ChainReport:
    """The walk passed; does the chain still contain what `anchor` verified?"""
    if anchor.last_id is None:
        return report
    verified_on = f"check #{anchor.pk} of {anchor.finished_at:%Y-%m-%d %H:%M} UTC"
    if report.rows_checked < anchor.last_id:
        return ChainReport(
            False,
            report.rows_checked,
            report.last_hash,
            report.rows_checked + 1,
            f"the chain ends at row {report.rows_checked}, but {verified_on} verified it up to "
            f"row {anchor.last_id}: rows {report.rows_checked + 1}..{anchor.last_id} were removed",
        )
    if stored_hash(anchor.last_id) != anchor.last_hash:
        return ChainReport(
            False,
            report.rows_checked,
            report.last_hash,
            anchor.last_id,
            f"row {anchor.last_id} no longer has the hash {verified_on} verified: rows up to "
            f"{anchor.last_id} were rewritten and every hash after them recomputed",
        )
    return report


def _finish(
    check: AuditChainCheck,
    *,
    status: str,
    reason: str = "",
    rows_checked: int = 0,
    last_hash: str = "",
    broken_id: int | None = None,
    checkpoint: int | None = None,
) -> None:
    check.status = status
    check.finished_at = timezone.now()
    check.rows_checked = rows_checked
    # A chain that verifies is gapless from row 1, so its last row's id is its length.
    check.last_id = rows_checked if status == ChainCheckStatus.PASSED and rows_checked else None
    check.last_hash = last_hash if check.last_id is not None else ""
    check.broken_id = broken_id
    check.reason = reason
    check.signature = sign_check(check)
    with transaction.atomic():
        check.save()
        # The verdict lands on the trail too (after the rows it covers: the next check and the
        # page walk it like any other row).
        audit_record(
            actor=check.requested_by,
            action=CHAIN_CHECK_ACTIONS[status],
            data={
                "check": check.pk,
                "trigger": check.trigger,
                "rows_checked": rows_checked,
                "broken_id": broken_id,
                "reason": reason,
                "checkpoint": checkpoint,  # its number in the anchor sink (a passed check)
            },
        )


def audit_chain_check_enqueue_failed(*, check_id: int, error: Exception) -> None:
    """The task queue refused the check: close it so that it can be started again."""
    check = AuditChainCheck.objects.get(pk=check_id)
    if check.status == ChainCheckStatus.RUNNING:
        _finish(
            check,
            status=ChainCheckStatus.ERROR,
            reason=f"the task queue could not take the check ({type(error).__name__})",
        )
