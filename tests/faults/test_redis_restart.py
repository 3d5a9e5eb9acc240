"""Redis (broker, FIC lock and cache) dies and comes back empty while requests are approved.

A private redis-server without persistence serves a real worker and a real celery beat. Requests
are approved just before Redis is killed (their queued messages die with it, some are
mid-provisioning), while it is down (the enqueue after the approval's commit fails), and after
it is back. None is lost: the sweeper finds those whose message vanished and re-enqueues them,
and every request reaches ready with Azure exactly as the database says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from identities.models import AuditEvent, IdentityRequest, RequestStatus
from tests.faults.consistency import azure_disagreements, ready_request_disagreements
from tests.faults.helpers import approve_new, statuses, wait_all_final, wait_worker_ready
from tests.support.redis_server import RedisServer
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import postgres_or_missing, wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

# serialized_rollback: the flush after each test then skips post_migrate, so the tests that
# restore the migrated rows (content types, groups, the catalog) after these still can.
pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

SWEEPER_ENV = {
    "SWEEPER_APPROVED_AFTER_SECONDS": "2",
    "SWEEPER_STALE_SECONDS": "3",
    "SWEEPER_INTERVAL_SECONDS": "1",
    "VERIFY_AFTER_PROVISIONING": "0",
    "HEARTBEAT_INTERVAL_SECONDS": "3600",
}


def test_requests_approved_around_a_redis_restart_are_not_lost(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    start_beat: WorkerFactory,
    use_broker: Callable[[Broker], None],
    private_redis: RedisServer,
    tmp_path: Path,
) -> None:
    postgres_or_missing()
    broker = make_broker("redis", tmp_path, url=private_redis.url(0))
    broker.env["CACHE_URL"] = private_redis.url(1)
    use_broker(broker)
    sandbox.emulator.config(latency_ms=200)
    env = {**sandbox.worker_env, **SWEEPER_ENV}
    worker = start_worker(broker, concurrency=2, **env)
    beat = start_beat(broker, **env)
    wait_worker_ready(worker)

    # Four requests for two pool processes: two are being provisioned, two wait in the queue.
    before = [approve_new(approved_request, n, roles=3).pk for n in range(4)]
    picked_up = wait_until(
        lambda: RequestStatus.PROVISIONING in statuses(before).values(), timeout=30, interval=0.05
    )
    assert picked_up, worker.log_tail()
    private_redis.kill()

    during = [approve_new(approved_request, n, roles=2).pk for n in range(4, 7)]
    time.sleep(2)
    private_redis.start()

    after = [approve_new(approved_request, n, roles=1).pk for n in range(7, 9)]
    pks = before + during + after
    final = wait_all_final(pks, timeout=90)

    assert set(final.values()) == {RequestStatus.READY}, (
        f"{final}\nworker:\n{worker.log_tail()}\nbeat:\n{beat.log_tail(10)}"
    )
    requeued = set(
        AuditEvent.objects.filter(action="identity_request.requeued").values_list(
            "identity_request_id", flat=True
        )
    )
    # Their enqueue failed (Redis was down at commit): only the sweeper can have started them.
    assert set(during) <= requeued, f"requeued {sorted(requeued)}, approved while down {during}"
    problems = azure_disagreements(sandbox)
    for identity_request in IdentityRequest.objects.filter(pk__in=pks):
        problems += ready_request_disagreements(identity_request)
    assert problems == [], "\n".join(problems)
