"""Celery tasks: ids in, one engine or service call each. Messages are JSON; acks are late.

Every task is an idempotent "ensure", so a redelivered message (worker killed, visibility
timeout) or a sweeper re-enqueue does no harm.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from identities.audit.anchor import anchor_chain
from identities.models import (
    ChainCheckTrigger,
    Identity,
    IdentityRequest,
    RequestKind,
    RequestStatus,
)
from identities.services import audit_chain_check_run, audit_chain_check_start
from provisioning import drift, metrics, reconcile, sweeper, verification
from provisioning.errors import GatewayError
from provisioning.models import VerificationOutcome

logger = logging.getLogger(__name__)


@shared_task(name="provisioning.provision_identity_request")
def provision_identity_request(identity_request_id: int) -> None:
    """Make Azure match an approved request (provision, change of roles or decommission), then
    verify a new federation (a change of roles adds none)."""
    reconcile.reconcile_request(identity_request_id)
    ready = IdentityRequest.objects.filter(
        pk=identity_request_id, status=RequestStatus.READY
    ).exclude(kind__in=[RequestKind.DECOMMISSION, RequestKind.CHANGE_ROLES])
    if settings.VERIFY_AFTER_PROVISIONING and ready.exists():
        verify_identity_request.delay(identity_request_id)


@shared_task(name="provisioning.verify_identity_request", bind=True)
def verify_identity_request(
    self: Any, identity_request_id: int, verification_id: int | None = None
) -> None:
    """One token-exchange attempt; while the new FIC propagates, check again later."""
    result = verification.identity_request_verify(
        identity_request_id=identity_request_id, verification_id=verification_id
    )
    if result is not None:
        metrics.verification_recorded(outcome=result.outcome, code=result.error_code)
    if result is not None and result.outcome == VerificationOutcome.PROPAGATING:
        self.apply_async(
            args=[identity_request_id, result.pk], countdown=settings.VERIFY_RETRY_SECONDS
        )


@shared_task(name="provisioning.repair_identity")
def repair_identity(identity_id: int) -> None:
    """Re-run reconcile for one identity and record its drift state afterwards."""
    identity = Identity.objects.filter(pk=identity_id, status=Identity.Status.READY).first()
    if identity is None:
        return
    try:
        drift.identity_repair(identity=identity)
    except GatewayError as error:
        logger.warning("repair of %s failed: %s", identity.name, error.describe())


@shared_task(name="provisioning.check_drift")
def check_drift() -> dict[str, int]:
    """Scheduled: compare every ready identity with Azure."""
    return drift.check_all()


@shared_task(name="provisioning.sweep_stuck_requests")
def sweep_stuck_requests() -> list[int]:
    """Scheduled: re-enqueue requests stuck in approved/provisioning (lost message, dead
    worker, Redis outage at approval time)."""
    return sweeper.sweep(enqueue=provision_identity_request.delay)


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
