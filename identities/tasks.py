"""Celery tasks of the identities app: the audit chain check and its anchoring (provisioning has
its own)."""

from __future__ import annotations

from celery import shared_task

from identities.audit_anchor import anchor_chain
from identities.models import ChainCheckTrigger
from identities.services import audit_chain_check_run, audit_chain_check_start


@shared_task(name="identities.verify_audit_chain")
def verify_audit_chain(check_id: int | None = None) -> dict[str, object]:
    """Walk the whole chain: the check the audit page started (`check_id`), or on the schedule a
    new one (skipped while another is running)."""
    if check_id is None:
        check, created = audit_chain_check_start(actor=None, trigger=ChainCheckTrigger.SCHEDULE)
        if not created:
            return {"check": check.pk, "status": "already running"}
        check_id = check.pk
    check = audit_chain_check_run(check_id=check_id)
    return {"check": check.pk, "status": check.status, "broken_id": check.broken_id}


@shared_task(name="identities.anchor_audit_chain")
def anchor_audit_chain() -> dict[str, object]:
    """Append a checkpoint of the chain to the anchor sink (skipped when nothing was added)."""
    checkpoint = anchor_chain()
    return {"checkpoint": checkpoint.seq if checkpoint else None}
