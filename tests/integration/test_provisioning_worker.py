"""Approve → ready through a real Celery worker process, enqueued on commit, on both brokers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from identities.models import IdentityRequest, RequestStatus
from provisioning.models import Verification, VerificationOutcome
from tests.support.people import SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import postgres_or_missing, wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def status_of(identity_request: IdentityRequest) -> str:
    return str(IdentityRequest.objects.values_list("status", flat=True).get(pk=identity_request.pk))


@pytest.mark.parametrize("broker_kind", ["embedded", "redis"])
def test_approval_enqueues_on_commit_and_a_worker_process_provisions_it(
    broker_kind: str,
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    if broker_kind == "redis":
        postgres_or_missing()
    broker = make_broker(broker_kind, tmp_path)
    use_broker(broker)
    worker = start_worker(broker, **sandbox.worker_env)

    scope = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
        "/providers/Microsoft.KeyVault/vaults/kv-payments"
    )
    from identities.policy import RoleDraft

    identity_request = approved_request(roles=(RoleDraft("Key Vault Secrets User", scope),))

    reached = wait_until(
        lambda: status_of(identity_request) in {RequestStatus.READY, RequestStatus.FAILED},
        timeout=90,
        interval=0.25,
    )
    identity_request.refresh_from_db()
    assert reached, f"still {identity_request.status}; worker log:\n{worker.log_tail()}"
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    arm = sandbox.arm()
    assert len(arm["identities"]) == 1
    assert len(arm["role_assignments"]) == 1

    # The worker verifies the federation right after provisioning: TokenRequest on the sandbox
    # cluster, exchanged at the emulator's Entra endpoint.
    verified = wait_until(
        lambda: Verification.objects.filter(identity_request=identity_request).exists(),
        timeout=60,
        interval=0.25,
    )
    assert verified, f"no verification; worker log:\n{worker.log_tail()}"
    verification = Verification.objects.get(identity_request=identity_request)
    assert verification.outcome == VerificationOutcome.WORKS, verification.summary
