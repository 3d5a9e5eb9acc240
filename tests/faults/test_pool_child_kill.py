"""kill -9 of one pool process only, with no sweeper running: acks_late on its own.

The worker's main process survives and sees its child die mid-task. Because tasks are
acknowledged late and rejected when their worker is lost (CELERY_TASK_ACKS_LATE,
CELERY_TASK_REJECT_ON_WORKER_LOST), the message goes back to the queue and the new pool
process provisions the request again from where the database says it is. No celery beat runs
here, so the sweeper cannot be what rescues it (the whole-group kills in test_worker_kills.py
are rescued by the sweeper).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from identities.models import IdentityRequest, RequestStatus
from provisioning.models import ProvisioningStep, StepStatus
from tests.faults.consistency import azure_disagreements, ready_request_disagreements
from tests.faults.helpers import (
    approve_new,
    pool_children,
    statuses,
    wait_all_final,
    wait_worker_ready,
)
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import postgres_or_missing, wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

# serialized_rollback: the flush after each test then skips post_migrate, so the tests that
# restore the migrated rows (content types, groups, the catalog) after these still can.
pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_a_pool_process_killed_mid_task_is_replaced_and_the_task_redelivered(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    postgres_or_missing()
    broker = make_broker("redis", tmp_path)
    use_broker(broker)
    sandbox.emulator.config(latency_ms=300)  # five writes: about two seconds a request
    env = {**sandbox.worker_env, "VERIFY_AFTER_PROVISIONING": "0"}
    worker = start_worker(broker, concurrency=1, **env)
    wait_worker_ready(worker)
    (child,) = pool_children(worker.pid)

    identity_request = approve_new(approved_request, 0, roles=3)
    started = wait_until(
        lambda: ProvisioningStep.objects.filter(
            identity_request=identity_request, status=StepStatus.DONE
        ).exists(),
        timeout=30,
        interval=0.02,
    )
    assert started, worker.log_tail()
    os.kill(child, signal.SIGKILL)
    at_kill = statuses([identity_request.pk])[identity_request.pk]

    final = wait_all_final([identity_request.pk], timeout=60)

    assert at_kill == RequestStatus.PROVISIONING  # the kill landed mid-provisioning
    assert worker.alive(), worker.log_tail()
    assert pool_children(worker.pid) != [child]  # a new pool process took over
    assert final == {identity_request.pk: RequestStatus.READY}, worker.log_tail()
    assert "WorkerLostError" in worker.log_tail(400)
    problems = azure_disagreements(sandbox) + ready_request_disagreements(
        IdentityRequest.objects.get(pk=identity_request.pk)
    )
    assert problems == []
