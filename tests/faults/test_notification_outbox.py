"""The notification outbox under kill -9 and an SMTP outage: nothing lost, nothing sent twice.

Real worker processes deliver the outbox to a real SMTP server (aiosmtpd) that answers slowly,
so a delivery is in progress for a while; the test kills the worker's whole process group
(kill -9) while one is, stops the SMTP server, starts a new worker that meets the dead server
(its sends fail and are rescheduled with backoff), then brings the server back. A real celery
beat runs the sweep that sends what was due or lost. At the end every email row is delivered,
and the server holds exactly one message per row: the set of Message-IDs (each row's opaque
`message_id`) is the set of rows, with no repeat.

FAULT_SEED=<seed> replays a run's timing choices.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from identities.models import DeliveryStatus, Notification, NotificationChannel
from identities.services import identity_request_create
from notifications.email import message_id
from tests.faults.helpers import fault_seed, wait_worker_ready
from tests.support.people import DraftFactory
from tests.support.services import postgres_or_missing, wait_until
from tests.support.smtp import SmtpServer
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

REQUESTS = 30  # two approvers each: 60 emails
KILLS = 3
RCPT_DELAY = 0.2  # seconds a delivery stays in progress at the server
ENV = {
    "NOTIFICATION_BACKOFF_SECONDS": "0.5",
    "NOTIFICATION_BACKOFF_MAX_SECONDS": "2",
    "NOTIFICATION_SWEEP_SECONDS": "1",
    # Only the notification sweep matters here; the other periodic tasks stay out of the way.
    "HEARTBEAT_INTERVAL_SECONDS": "3600",
    "SWEEPER_INTERVAL_SECONDS": "3600",
    "DRIFT_CHECK_INTERVAL_SECONDS": "3600",
    "AUDIT_VERIFY_INTERVAL_SECONDS": "3600",
    "AUDIT_ANCHOR_INTERVAL_SECONDS": "3600",
}


def email_rows() -> Any:
    return Notification.objects.filter(channel=NotificationChannel.EMAIL)


def test_kill_9_mid_delivery_and_an_smtp_outage_lose_nothing_and_send_nothing_twice(
    tmp_path: Path,
    start_worker: WorkerFactory,
    start_beat: WorkerFactory,
    use_broker: Any,
    requester: Any,
    approver: Any,
    second_approver: Any,
    make_draft: DraftFactory,
) -> None:
    postgres_or_missing()
    rng = random.Random(fault_seed("notification outbox"))
    smtp = SmtpServer()
    smtp.slow_down(RCPT_DELAY)
    smtp.start()
    broker: Broker = make_broker("embedded", tmp_path)
    use_broker(broker)
    env = {**smtp.env(), **ENV}
    try:
        worker = start_worker(broker, concurrency=2, **env)
        wait_worker_ready(worker)
        start_beat(broker, **env)
        for n in range(REQUESTS):
            identity_request_create(
                requester=requester,
                draft=make_draft(service_account=f"app{n}", app_name=f"app{n}"),
            )
        ids = set(email_rows().values_list("message_id", flat=True))
        assert len(ids) == 2 * REQUESTS

        for _ in range(KILLS):
            seen = smtp.rcpts_seen
            assert wait_until(lambda seen=seen: smtp.rcpts_seen > seen, timeout=60), (
                f"no delivery started:\n{worker.log_tail()}"
            )
            time.sleep(rng.uniform(0, RCPT_DELAY / 2))  # inside the slow RCPT: mid-delivery
            worker.kill()
            smtp.stop()
            worker = start_worker(broker, concurrency=2, **env)
            wait_worker_ready(worker)
            time.sleep(rng.uniform(1.0, 3.0))  # the new worker meets a dead mail server
            smtp.start()

        delivered = wait_until(
            lambda: not email_rows().exclude(status=DeliveryStatus.DELIVERED).exists(),
            timeout=180,
            interval=0.5,
        )
        left = list(
            email_rows()
            .exclude(status=DeliveryStatus.DELIVERED)
            .values("key", "status", "attempts", "last_error")[:3]
        )
        assert delivered, f"not delivered: {left}\n{worker.log_tail()}"
    finally:
        smtp.stop()

    arrived = Counter(str(message["Message-ID"]) for message in smtp.messages)
    assert set(arrived) == {message_id(mid) for mid in ids}, "every notification arrived"
    assert [mid for mid, count in arrived.items() if count > 1] == [], "none arrived twice"
    # The outage was met: some rows needed more than one attempt, and say why they failed.
    assert email_rows().filter(attempts__gt=1).exists()
