"""Access review revocation and transfer tags through a real Celery worker process: the beat
task's sweep revokes an overdue item's role assignments in the emulator (the revoke is sent on
commit, by name, and run by the worker), and an approved transfer's tags reach Azure."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from django.utils import timezone

from identities.models import (
    AccessReviewCampaign,
    AuditEvent,
    ChildStatus,
    IdentityRequest,
    RequestStatus,
    RoleAssignment,
)
from identities.services import (
    access_review_open,
    ownership_transfer_approve,
    ownership_transfer_consent,
    ownership_transfer_request,
)
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_sweep_revokes_overdue_access_and_a_transfer_retags_through_a_worker(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    use_broker: Any,
    tmp_path: Path,
    requester: Any,
    outsider: Any,
    approver: Any,
    second_approver: Any,
) -> None:
    broker: Broker = make_broker("embedded", tmp_path)
    use_broker(broker)
    worker = start_worker(broker, **sandbox.worker_env)
    identity_request = approved_request()
    ready = wait_until(
        lambda: IdentityRequest.objects.filter(
            pk=identity_request.pk, status=RequestStatus.READY
        ).exists(),
        timeout=90,
        interval=0.25,
    )
    assert ready, f"not ready; worker log:\n{worker.log_tail()}"
    identity_request.refresh_from_db()
    identity = identity_request.identity
    assert identity is not None and len(sandbox.arm()["role_assignments"]) == 1

    # The transfer first (the identity must be ready with its roles to move).
    transfer = ownership_transfer_request(
        requester=requester,
        identity=identity,
        to_team=outsider.teams.get(),
        justification="Search runs checkout.",
    )
    ownership_transfer_consent(transfer=transfer, actor=outsider)
    ownership_transfer_approve(transfer=transfer, approver=approver)
    retagged = wait_until(
        lambda: all(
            record["tags"].get("team") == "search"
            for record in sandbox.arm()["identities"].values()
        ),
        timeout=60,
        interval=0.25,
    )
    assert retagged, f"tags not updated; worker log:\n{worker.log_tail()}"

    # An overdue review that revokes, past its grace period; the beat task does the rest.
    campaign = access_review_open(
        actor=second_approver,
        name="overdue",
        due_at=timezone.now() + timedelta(hours=1),
        revoke_when_overdue=True,
    )
    AccessReviewCampaign.objects.filter(pk=campaign.pk).update(
        due_at=timezone.now() - timedelta(days=1)
    )
    current_app.send_task("provisioning.sweep_access_reviews")
    revoked = wait_until(
        lambda: (
            not sandbox.arm()["role_assignments"]
            and RoleAssignment.objects.filter(
                identity=identity, status=ChildStatus.REMOVED
            ).exists()
        ),
        timeout=90,
        interval=0.25,
    )
    assert revoked, f"not revoked; worker log:\n{worker.log_tail()}"
    assert len(sandbox.arm()["identities"]) == 1  # the identity stays
    assert AuditEvent.objects.filter(action="access_review.escalated").exists()
    assert AuditEvent.objects.filter(action="access_review.revoked", identity=identity).exists()
