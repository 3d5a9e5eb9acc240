"""Celery tasks: ids in, one engine or service call each. Messages are JSON; acks are late.

Every task is an idempotent "ensure", so a redelivered message (worker killed, visibility
timeout) or a sweeper re-enqueue does no harm.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, NoReturn

from celery import shared_task
from django.conf import settings
from django.db import Error, InterfaceError, OperationalError, connections

from identities.audit.anchor import anchor_chain
from identities.models import (
    ChainCheckTrigger,
    Identity,
    IdentityRequest,
    RequestKind,
    RequestStatus,
)
from identities.selectors.reviews import identities_awaiting_revoke
from identities.services import (
    access_expiry_remind,
    access_reviews_escalate_overdue,
    access_reviews_revoke_overdue,
    audit_chain_check_run,
    audit_chain_check_start,
    identities_expire,
    role_assignments_expire,
)
from identities.work import Work, enqueue
from provisioning import (
    drift,
    metrics,
    ratelimit,
    reconcile,
    release,
    services,
    sweeper,
    verification,
)
from provisioning.errors import GatewayError
from provisioning.models import VerificationOutcome
from provisioning.ratelimit import WritesDeferred
from provisioning.retry import jittered

logger = logging.getLogger(__name__)

# PostgreSQL went away (connect refused, connection cut, server restarting): worth a rerun.
# Other database errors (integrity, programming) are bugs a rerun would only repeat.
DATABASE_LOST = (OperationalError, InterfaceError)


def retry_after_database_loss(task: Any, error: OperationalError | InterfaceError) -> NoReturn:
    """Close the broken connections and have Celery run the task again after a jittered
    exponential backoff, at most PROVISIONING_DATABASE_RETRIES times (then the error stands
    and the sweeper is the last resort)."""
    # A connection that failed stays broken: drop them all, the rerun connects afresh.
    with contextlib.suppress(Error):
        connections.close_all()
    attempt = task.request.retries + 1
    countdown = jittered(
        attempt,
        base=settings.PROVISIONING_DATABASE_BACKOFF_SECONDS,
        cap=settings.PROVISIONING_DATABASE_BACKOFF_MAX_SECONDS,
    )
    logger.warning(
        "%s lost the database (%s), run %d of %d again in %.1fs",
        task.name,
        type(error).__name__,
        attempt,
        settings.PROVISIONING_DATABASE_RETRIES,
        countdown,
    )
    # Raises Retry (a new message with the countdown), or `error` once the retries are used up.
    raise task.retry(
        exc=error, countdown=countdown, max_retries=settings.PROVISIONING_DATABASE_RETRIES
    )


def defer_for_writes(task: Any, identity_request_id: int, deferred: WritesDeferred) -> None:
    """Send the run again once the subscription's write bucket has refilled, freeing this
    worker for other subscriptions' work meanwhile (the engine resumes where it stopped). The
    countdown stays inside the sweeper's window, so a deferred request is never "stuck"."""
    countdown = min(deferred.countdown, settings.SWEEPER_STALE_SECONDS / 2)
    services.request_defer(identity_request_id=identity_request_id)
    metrics.writes_deferred(kind=deferred.kind, countdown=countdown)
    logger.info("request %s: %s; running again in %.1fs", identity_request_id, deferred, countdown)
    options: dict[str, Any] = {}
    if deferred.reserved and settings.PROVISIONING_DEFERRED_PRIORITY is not None:
        # Ahead of the queue (Redis): a worker receives it at once and holds it until due, so
        # its reserved tokens are not left unused. A run turned away (nothing reserved) goes
        # at the default priority, behind the work already queued.
        options["priority"] = settings.PROVISIONING_DEFERRED_PRIORITY
    task.apply_async(
        args=[identity_request_id],
        kwargs={"prepaid": deferred.prepaid_json()},
        countdown=countdown,
        **options,
    )


def prepaid_to_spend(task: Any, prepaid: ratelimit.Prepaid | None) -> ratelimit.Prepaid | None:
    """The tokens a deferral reserved for this run, or None on a retry after losing the
    database: Celery's retry sends the message's own kwargs again, and the run that lost the
    database may have spent them already (spending them twice would let the limiter count
    fewer writes than ARM does). A deferral sends a new message, whose retries count is 0."""
    return None if task.request.retries else prepaid


@shared_task(name="provisioning.provision_identity_request", bind=True)
def provision_identity_request(
    self: Any, identity_request_id: int, prepaid: ratelimit.Prepaid | None = None
) -> None:
    """Make Azure match an approved request (provision, change of roles or decommission), then
    check its drift and verify a new federation (a change of roles adds none); after a
    decommission, withdraw the portal's client-id annotation from its ServiceAccounts. Losing
    the database mid-run retries the whole (idempotent) run later; so does a subscription's
    empty ARM write bucket, with the tokens reserved for the run (`prepaid`)."""
    try:
        with ratelimit.deferrable(prepaid_to_spend(self, prepaid)):
            reconcile.reconcile_request(identity_request_id)
        finished = IdentityRequest.objects.filter(
            pk=identity_request_id, status=RequestStatus.READY
        )
        if finished.filter(kind=RequestKind.DECOMMISSION).exists():
            release.identity_release_service_accounts(identity_request_id=identity_request_id)
            return
        identity_id, kind = finished.values_list("identity_id", "kind").first() or (None, None)
    except WritesDeferred as deferred:
        defer_for_writes(self, identity_request_id, deferred)
        return
    except DATABASE_LOST as error:
        retry_after_database_loss(self, error)
    if identity_id is None:
        return
    # The drift state is known at once, not "unknown" until the hourly run.
    enqueue(Work.CHECK_IDENTITY_DRIFT, identity_id)
    if settings.VERIFY_AFTER_PROVISIONING and kind != RequestKind.CHANGE_ROLES:
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


@shared_task(name="provisioning.check_identity_drift")
def check_identity_drift(identity_id: int) -> None:
    """Compare one ready identity with Azure (asked for right after it is provisioned)."""
    identity = Identity.objects.filter(pk=identity_id, status=Identity.Status.READY).first()
    if identity is None:
        return
    try:
        drift.identity_check_drift(identity=identity)
    except GatewayError as error:
        # The hourly check tries again; the state stays as it was.
        metrics.drift_recorded(result="error", finding_kinds=[])
        logger.warning("drift check of %s failed: %s", identity.name, error.describe())


@shared_task(name="provisioning.revoke_role_assignments")
def revoke_role_assignments(identity_id: int) -> None:
    """Delete the role assignments an overdue access review revoked or that passed their end
    date (the identity stays)."""
    identity = Identity.objects.filter(pk=identity_id, status=Identity.Status.READY).first()
    if identity is None:
        return
    try:
        reconcile.revoke(identity)
    except GatewayError as error:  # the access review sweep sends it again
        logger.warning("revoke for %s failed: %s", identity.name, error.describe())


@shared_task(name="provisioning.update_identity_tags")
def update_identity_tags(identity_id: int) -> None:
    """PATCH an identity's tags in Azure after they changed in the portal (team transfer)."""
    identity = Identity.objects.filter(pk=identity_id, status=Identity.Status.READY).first()
    if identity is None:
        return
    reconcile.update_tags(identity)


@shared_task(name="provisioning.sweep_access_reviews")
def sweep_access_reviews() -> dict[str, object]:
    """Scheduled: escalate overdue review items, revoke those past their grace period (where
    the campaign says so), and re-send revocations Azure has not finished."""
    escalated = access_reviews_escalate_overdue()
    revoked = set(access_reviews_revoke_overdue())
    resent = [pk for pk in identities_awaiting_revoke() if pk not in revoked]
    for identity_id in resent:
        revoke_role_assignments.delay(identity_id)
    return {"escalated": escalated, "revoked": sorted(revoked), "resent": resent}


@shared_task(name="provisioning.sweep_expired_access")
def sweep_expired_access() -> dict[str, object]:
    """Scheduled: remind owning teams of ends coming up, mark role assignments past their end
    for removal and decommission identities past theirs, and re-send removals Azure has not
    finished (the portal's sweep reconciles time-bound access whatever Azure did)."""
    reminded = access_expiry_remind()
    expired = set(role_assignments_expire())
    decommissions = identities_expire()
    resent = [pk for pk in identities_awaiting_revoke() if pk not in expired]
    for identity_id in resent:
        revoke_role_assignments.delay(identity_id)
    return {
        "reminded": reminded,
        "roles_expired_on": sorted(expired),
        "decommissions": decommissions,
        "resent": resent,
    }


def _enqueue_drift_batch(run_id: int, ticket: str, countdown: float) -> None:
    drift_batch.apply_async(args=(run_id, ticket), countdown=countdown)


@shared_task(name="provisioning.check_drift")
def check_drift() -> dict[str, Any]:
    """Scheduled (every DRIFT_TICK_SECONDS, drift queue): start the hourly drift run when it is
    due, or continue a stalled one from its cursor."""
    return drift.run_tick(enqueue_batch=_enqueue_drift_batch)


@shared_task(name="provisioning.drift_batch")
def drift_batch(run_id: int, ticket: str) -> dict[str, Any]:
    """One batch of a drift run (drift queue): paced reads, then the next batch is enqueued."""
    return drift.run_batch(run_id, ticket, enqueue_batch=_enqueue_drift_batch)


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
