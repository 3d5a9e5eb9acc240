"""The sweeper re-enqueues requests whose provisioning message was lost."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import redis
from django.test import override_settings
from django.utils import timezone

from identities.models import AuditEvent, IdentityRequest, RequestStatus
from provisioning import ratelimit
from provisioning.models import ProvisioningStep
from provisioning.sweeper import sweep
from provisioning.tasks import provision_identity_request
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import redis_url_or_missing

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def age(identity_request: IdentityRequest, seconds: int) -> None:
    IdentityRequest.objects.filter(pk=identity_request.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_requests_stuck_in_approved_or_provisioning_are_requeued_once_each(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    lost = approved_request(service_account="lost")
    fresh = approved_request(service_account="fresh")
    stalled = approved_request(service_account="stalled")
    IdentityRequest.objects.filter(pk=stalled.pk).update(status=RequestStatus.PROVISIONING)
    ProvisioningStep.objects.create(identity_request=stalled, key="identity", label="x")
    age(lost, 3600)
    age(stalled, 3600)
    ProvisioningStep.objects.filter(identity_request=stalled).update(
        updated_at=timezone.now() - timedelta(seconds=3600)
    )
    enqueued: list[int] = []

    requeued = sweep(enqueue=enqueued.append)

    assert sorted(requeued) == sorted([lost.pk, stalled.pk])
    assert sorted(enqueued) == sorted([lost.pk, stalled.pk])
    assert fresh.pk not in enqueued
    assert AuditEvent.objects.filter(action="identity_request.requeued").count() == 2


def test_a_provisioning_request_with_recent_step_progress_is_left_alone(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    busy = approved_request()
    IdentityRequest.objects.filter(pk=busy.pk).update(status=RequestStatus.PROVISIONING)
    age(busy, 3600)
    ProvisioningStep.objects.create(identity_request=busy, key="identity", label="x")

    assert sweep(enqueue=lambda pk: None) == []


def test_a_backlog_of_sweeps_requeues_each_stuck_request_once(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    lost = approved_request()
    age(lost, 3600)
    enqueued: list[int] = []

    # Sweeps queued while the workers were down run back to back once a worker is up.
    for _ in range(5):
        sweep(enqueue=enqueued.append)

    assert enqueued == [lost.pk]
    assert AuditEvent.objects.filter(action="identity_request.requeued").count() == 1


def test_a_run_deferred_for_arms_write_budget_is_not_taken_for_stuck(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    url = redis_url_or_missing()
    # A request a worker already claimed long ago, whose rerun now finds its subscription's
    # write bucket empty: the run is sent again with a countdown and nothing is written.
    waiting = approved_request()
    IdentityRequest.objects.filter(pk=waiting.pk).update(status=RequestStatus.PROVISIONING)
    age(waiting, 3600)
    writes_before = len(sandbox.arm_writes())
    client = redis.Redis.from_url(url)
    client.delete(*client.keys("wip:arm-bucket:*"), "wip:arm-bucket:none")
    with override_settings(
        REDIS_URL=url,
        PROVISIONING_WRITE_LIMITER="redis",
        PROVISIONING_WRITE_BUCKET_CAPACITY=1,
        PROVISIONING_WRITE_REFILL_PER_SECOND=0.01,
    ):
        ratelimit.acquire_writes(Counter({(waiting.cluster.subscription_id, "writes"): 1}))
        provision_identity_request.apply(args=[waiting.pk])
        client.delete(*client.keys("wip:arm-bucket:*"), "wip:arm-bucket:none")

    waiting.refresh_from_db()
    assert waiting.status == RequestStatus.PROVISIONING
    assert len(sandbox.arm_writes()) == writes_before
    assert sweep(enqueue=lambda pk: None) == []
