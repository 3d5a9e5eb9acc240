"""Checks of the whole audit chain run by real Celery processes: one an auditor starts from
the audit page, and the one beat schedules."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from identities.audit import audit_record
from identities.models import AuditChainCheck, ChainCheckStatus, ChainCheckTrigger
from identities.services import audit_chain_check_start
from tests.support.services import postgres_or_missing, wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def finished(**filters: Any) -> Callable[[], bool]:
    return AuditChainCheck.objects.filter(**filters).exclude(status=ChainCheckStatus.RUNNING).exists


def test_a_check_started_on_the_audit_page_is_run_by_a_worker(
    auditor: Any,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    postgres_or_missing()
    for n in range(5):
        audit_record(actor=None, action="test.row", data={"n": n})
    broker = make_broker("redis", tmp_path)
    use_broker(broker)
    worker = start_worker(broker, concurrency=1)
    client = Client()
    client.force_login(auditor)

    assert client.post(reverse("audit_chain_verify")).status_code == 302

    done = wait_until(finished(trigger=ChainCheckTrigger.USER), timeout=60, interval=0.25)
    assert done, f"the check never finished; worker log:\n{worker.log_tail()}"
    check = AuditChainCheck.objects.get()
    assert check.status == ChainCheckStatus.PASSED, check.reason
    assert check.rows_checked == 6  # five rows and the audit row of the request itself
    progress = client.get(reverse("audit_chain_progress"), HTTP_ACCEPT="application/json")
    assert progress.json()["status"] == "idle"
    assert f"Check #{check.pk} walked the whole chain" in " ".join(
        progress.json()["html"]["chain-status"].split()
    )


def test_beat_schedules_a_check_of_the_whole_chain(
    start_worker: WorkerFactory, start_beat: WorkerFactory, tmp_path: Path
) -> None:
    postgres_or_missing()
    audit_record(actor=None, action="test.row", data={})
    broker = make_broker("redis", tmp_path)
    env = {"AUDIT_VERIFY_INTERVAL_SECONDS": "1"}
    worker = start_worker(broker, concurrency=1, **env)
    beat = start_beat(broker, **env)

    done = wait_until(finished(trigger=ChainCheckTrigger.SCHEDULE), timeout=90, interval=0.5)

    assert done, f"worker:\n{worker.log_tail()}\nbeat:\n{beat.log_tail()}"
    check = AuditChainCheck.objects.filter(trigger=ChainCheckTrigger.SCHEDULE).first()
    assert check is not None and check.status == ChainCheckStatus.PASSED, check


def test_two_checks_started_at_the_same_instant_make_one_running_check() -> None:
    """The second start cannot see the first's check until it commits; the table's one-running
    constraint makes it wait, then join that check instead of starting a second walk."""
    postgres_or_missing()
    first_started, commit_first = threading.Event(), threading.Event()
    results: dict[str, tuple[AuditChainCheck, bool]] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = audit_chain_check_start(
                    actor=None, trigger=ChainCheckTrigger.SCHEDULE
                )
                first_started.set()
                commit_first.wait(timeout=30)
        finally:
            connection.close()

    def second() -> None:
        try:
            results["second"] = audit_chain_check_start(
                actor=None, trigger=ChainCheckTrigger.SCHEDULE
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_started.wait(timeout=30)
    threads[1].start()
    # The second start is waiting on the first's uncommitted row before the first commits.
    waited = wait_until(lambda: blocked_on_a_lock() > 0, timeout=30, interval=0.05)
    assert waited, "the second start did not wait for the first: two checks could run at once"
    commit_first.set()
    for thread in threads:
        thread.join(timeout=30)

    (check, created), (joined, created_again) = results["first"], results["second"]
    assert created and not created_again and joined.pk == check.pk
    assert list(AuditChainCheck.objects.values_list("pk", "status")) == [
        (check.pk, ChainCheckStatus.RUNNING)
    ]


def blocked_on_a_lock() -> int:
    """Sessions of this test database waiting for a lock held by another transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        (waiting,) = cursor.fetchone()
    return int(waiting)
