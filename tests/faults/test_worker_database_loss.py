"""A provisioning worker loses PostgreSQL: the task runs again once the database is back.

A real worker reaches PostgreSQL through a TCP proxy (tests/support/tcp_proxy.py); the test
reads the database directly. The proxy refuses every connection when the worker picks a request
up, or cuts the worker's connection right after an Azure write, before it is recorded. No beat
runs, so no sweeper: only the task's own retry can bring the request to ready, and it must do so
within seconds of the database coming back, with Azure exactly as the database says (the rerun
repeats the write under the same name instead of creating a second anything).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from identities.audit import audit_verify_chain
from identities.models import IdentityRequest, RequestStatus
from tests.faults.consistency import azure_disagreements, ready_request_disagreements
from tests.faults.helpers import approve_new, statuses, wait_all_final, wait_worker_ready
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import ManagedProcess, postgres_or_missing, wait_until
from tests.support.tcp_proxy import TcpProxy
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

RETRY_LOGGED = "lost the database"


@pytest.fixture
def proxied_worker(
    sandbox: Sandbox,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    postgres_proxy: TcpProxy,
    tmp_path: Path,
) -> ManagedProcess:
    postgres_or_missing()
    broker = make_broker("redis", tmp_path)
    use_broker(broker)
    env = {
        **sandbox.worker_env,
        "DATABASE_URL": postgres_proxy.database_url(),
        "DB_CONN_MAX_AGE": "0",
        "VERIFY_AFTER_PROVISIONING": "0",
        "HEARTBEAT_INTERVAL_SECONDS": "3600",
    }
    worker = start_worker(broker, concurrency=1, **env)
    wait_worker_ready(worker)
    return worker


def assert_consistent(sandbox: Sandbox, pks: list[int]) -> None:
    problems = azure_disagreements(sandbox)
    for identity_request in IdentityRequest.objects.filter(pk__in=pks):
        problems += ready_request_disagreements(identity_request)
    assert problems == [], "\n".join(problems)
    assert audit_verify_chain().ok


def test_a_request_picked_up_while_the_database_is_down_is_ready_soon_after_it_is_back(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    proxied_worker: ManagedProcess,
    postgres_proxy: TcpProxy,
) -> None:
    postgres_proxy.refuse()
    identity_request = approve_new(approved_request, 0, roles=2)
    # The worker took the message and failed to connect at least once, then twice (a retry).
    retried = wait_until(
        lambda: proxied_worker.log_tail(400).count(RETRY_LOGGED) >= 2, timeout=30, interval=0.1
    )
    assert retried, proxied_worker.log_tail()
    time.sleep(2)
    assert statuses([identity_request.pk])[identity_request.pk] == RequestStatus.APPROVED
    postgres_proxy.restore()
    back_at = time.monotonic()

    final = wait_all_final([identity_request.pk], timeout=60)

    took = time.monotonic() - back_at
    assert final == {identity_request.pk: RequestStatus.READY}, proxied_worker.log_tail(80)
    # The backoff is exponential and capped: the next run comes within about twice the outage
    # (here well under the sweeper's 300 s, which is not even running).
    assert took < 30, f"ready {took:.1f}s after the database came back"
    assert_consistent(sandbox, [identity_request.pk])


@pytest.mark.parametrize(
    "statement",
    [
        # The identity's ids, stored right after its PUT (the engine's main thread).
        b'UPDATE "identities_identity" SET "resource_id"',
        # A role assignment made active right after its PUT (one of the engine's pool threads).
        b'UPDATE "identities_roleassignment" SET "status"',
    ],
)
def test_a_connection_cut_after_an_azure_write_reruns_without_a_second_azure_object(
    statement: bytes,
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    proxied_worker: ManagedProcess,
    postgres_proxy: TcpProxy,
) -> None:
    postgres_proxy.cut_on(statement)
    identity_request = approve_new(approved_request, 0, roles=2)

    final = wait_all_final([identity_request.pk], timeout=60)

    assert postgres_proxy.cuts == 1, f"{statement!r} was never sent"
    assert final == {identity_request.pk: RequestStatus.READY}, proxied_worker.log_tail(80)
    assert RETRY_LOGGED in proxied_worker.log_tail(400)
    assert_consistent(sandbox, [identity_request.pk])
    assert len(sandbox.arm()["identities"]) == 1
