"""The engine's bookkeeping off the critical path: a phase's steps and audit rows are recorded in
one transaction under one acquisition of the chain's lock, and still show every Azure write with
its x-ms-request-id, in order, the chain intact."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.backends.signals import connection_created

from identities.audit import audit_verify_chain
from identities.models import AuditEvent, Notification, NotificationEvent, RequestStatus
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.reconcile import pool_shutdown, reconcile_request
from tests.integration.test_provisioning import vault_roles
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import postgres_or_missing

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def statements() -> Iterator[list[tuple[str, str]]]:
    """Every statement (thread name, SQL) on any connection of any thread (the engine's pool
    threads open theirs afresh: the pool is shut down first)."""
    pool_shutdown()
    taken: list[tuple[str, str]] = []
    guard = threading.Lock()

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        with guard:
            taken.append((threading.current_thread().name, sql))
        return execute(sql, params, many, context)

    def on_connect(sender: Any, connection: Any, **_kwargs: Any) -> None:
        connection.execute_wrappers.append(wrapper)

    connection_created.connect(on_connect, weak=False)
    for connection in connections.all():
        connection.execute_wrappers.append(wrapper)
    try:
        yield taken
    finally:
        connection_created.disconnect(on_connect)
        for connection in connections.all():
            if wrapper in connection.execute_wrappers:
                connection.execute_wrappers.remove(wrapper)
        pool_shutdown()


@pytest.mark.parametrize("k", [1, 6])
def test_the_chain_lock_is_taken_once_per_phase_whatever_k(
    k: int,
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    statements: list[tuple[str, str]],
) -> None:
    postgres_or_missing()
    identity_request = approved_request(roles=vault_roles(k))
    statements.clear()

    reconcile_request(identity_request.pk)
    chain_locks = [thread for thread, sql in statements if "pg_advisory_xact_lock" in sql]

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    # The claim (1), the identity's phase (1), and the FIC's and roles' phase (1), whose
    # transaction also moves the identity and the request to ready (their audit rows chain on
    # under the phase's lock): 3 for any k. Changed from 5 when ready joined the last phase's
    # transaction (it took the lock twice more, in a transaction of its own); before round 2,
    # each Azure write took it on the pool thread that made it: 1 + 1 + (1 + k) + 2 = 5 + k.
    assert len(chain_locks) == 3, chain_locks


def test_every_azure_write_is_in_the_trail_with_its_request_id_in_order_and_the_chain_intact(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    identity_request = approved_request(roles=vault_roles(4))

    reconcile_request(identity_request.pk)

    steps = {
        step.key: step.azure_request_id
        for step in ProvisioningStep.objects.filter(identity_request=identity_request)
    }
    assert set(
        ProvisioningStep.objects.filter(identity_request=identity_request).values_list(
            "status", flat=True
        )
    ) == {StepStatus.DONE}
    events = list(
        AuditEvent.objects.filter(identity_request=identity_request, action__startswith="azure.")
        .order_by("id")
        .values_list("action", "data")
    )
    assert len(events) == len(steps) == 2 + 4
    # Every write's audit row carries the request id its step recorded, one row per step.
    assert sorted(data["azure_request_id"] for _action, data in events) == sorted(steps.values())
    assert all(data["azure_request_id"] for _action, data in events)
    # In order: the identity first (its phase committed before the children were sent), then
    # the FIC and the roles; the request is ready after all of them.
    assert events[0][0] == "azure.identity.created"
    assert events[0][1]["azure_request_id"] == steps["identity"]
    actions = list(
        AuditEvent.objects.filter(identity_request=identity_request)
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[-1] == "identity_request.ready"
    report = audit_verify_chain()
    assert report.ok, report.reason


@pytest.mark.parametrize("k", [1, 6])
def test_the_childrens_records_are_two_statements_whatever_k(
    k: int,
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    statements: list[tuple[str, str]],
) -> None:
    # The children's phase records its k role assignments in one UPDATE and its k + 1 audit
    # rows (FIC and roles) in one INSERT (records_batched); before, one of each per write.
    identity_request = approved_request(roles=vault_roles(k))
    statements.clear()

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    role_updates = [sql for _t, sql in statements if sql.startswith(ROLE_UPDATE)]
    assert len(role_updates) == 1, role_updates
    # The claim, the identity's record, and the last phase's records with the identity and the
    # request becoming ready in the same transaction, in one statement: 3 inserts into the
    # trail for any k. (Was 5 until the ready rows joined the records' deferred INSERT.)
    assert sum(sql.startswith(AUDIT_INSERT) for _t, sql in statements) == 3
    written = AuditEvent.objects.filter(
        identity_request=identity_request, action__startswith="azure.role_assignment."
    )
    assert written.count() == k
    report = audit_verify_chain()
    assert report.ok, report.reason


def test_after_the_last_answer_nothing_is_read_that_the_run_read_while_its_calls_flew(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    statements: list[tuple[str, str]],
) -> None:
    # Who hears "ready" (the team's members, with their preferences) and when the request was
    # approved (the metric) are read while the identity's PUT is in flight. After the last
    # answer, every statement delays ready: none of them reads these. (The webhook endpoints
    # are still read there: see notification_audience.)
    identity_request = approved_request(roles=vault_roles(2))
    statements.clear()

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    engine = [sql for thread, sql in statements if thread == threading.current_thread().name]
    last_phase = max(n for n, sql in enumerate(engine) if sql.startswith(STEP_CLOSE))
    after = engine[last_phase:]
    for table in ("auth_user", "identities_approval"):
        assert not [sql for sql in after if f'FROM "{table}"' in sql], (table, after)
    # Read ahead, and still told: the requester hears that the request is ready.
    told = Notification.objects.filter(
        identity_request=identity_request, event=NotificationEvent.REQUEST_READY
    )
    assert identity_request.requester_id in set(told.values_list("recipient_id", flat=True))


ROLE_UPDATE = 'UPDATE "identities_roleassignment"'
AUDIT_INSERT = 'INSERT INTO "identities_auditevent"'
# The statement that closes a phase's steps (done with their request ids, or failed).
STEP_CLOSE = (
    'UPDATE "provisioning_provisioningstep" SET "status" = %s, "error" = %s, "azure_request_id"'
)
