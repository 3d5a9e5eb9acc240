"""Finding requests whose provisioning message was lost, so nothing approved is ever dropped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.models import IdentityRequest, RequestStatus

logger = logging.getLogger(__name__)


def stuck_requests() -> list[IdentityRequest]:
    """Approved for longer than SWEEPER_APPROVED_AFTER_SECONDS, or provisioning with no step
    progress for SWEEPER_STALE_SECONDS (each step attempt touches its row)."""
    now = timezone.now()
    approved_before = now - timedelta(seconds=settings.SWEEPER_APPROVED_AFTER_SECONDS)
    stale_before = now - timedelta(seconds=settings.SWEEPER_STALE_SECONDS)
    return list(
        IdentityRequest.objects.annotate(
            last_progress=Greatest("updated_at", Coalesce(Max("steps__updated_at"), "updated_at"))
        ).filter(
            Q(status=RequestStatus.APPROVED, updated_at__lt=approved_before)
            | Q(status=RequestStatus.PROVISIONING, last_progress__lt=stale_before)
        )
    )


def sweep(*, enqueue: Callable[[int], object]) -> list[int]:
    """Re-enqueue every stuck request (the engine is idempotent) and audit it."""
    requeued: list[int] = []
    for identity_request in stuck_requests():
        with transaction.atomic():
            # Compare-and-set on updated_at, which also starts a new waiting window: of the
            # sweeps that find one request (the backlog of sweeps queued while the workers were
            # down, two running at once), only the first re-enqueues it.
            claimed = IdentityRequest.objects.filter(
                pk=identity_request.pk,
                status=identity_request.status,
                updated_at=identity_request.updated_at,
            ).update(updated_at=timezone.now())
            if not claimed:
                continue
            audit_record(
                actor=None,
                action=AuditAction.REQUEST_REQUEUED,
                identity_request=identity_request,
                identity=identity_request.identity,
                data={"status": identity_request.status, "reason": "no progress"},
            )
            transaction.on_commit(partial(enqueue, identity_request.pk))
        requeued.append(identity_request.pk)
    if requeued:
        logger.info("sweeper re-enqueued requests %s", requeued)
    return requeued
