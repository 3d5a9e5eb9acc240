"""The outbox through a real worker: a request filed and approved in this process; on commit the
delivery is enqueued to Redis, a real `celery worker` signs and posts the webhook to a real HTTP
receiver (admitted by the allow-list) and mails the approvers through a real SMTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from identities.models import DeliveryStatus, Notification
from identities.services import (
    identity_request_approve,
    identity_request_create,
    webhook_endpoint_create,
)
from tests.faults.helpers import wait_worker_ready
from tests.support.http_receiver import Receiver
from tests.support.people import DraftFactory
from tests.support.services import postgres_or_missing, wait_until
from tests.support.smtp import SmtpServer
from tests.support.workers import WorkerFactory, make_broker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_delivers_email_and_signed_webhooks_on_commit(
    tmp_path: Path,
    start_worker: WorkerFactory,
    use_broker: Any,
    smtp_server: SmtpServer,
    http_receiver: Receiver,
    requester: Any,
    approver: Any,
    team: Any,
    make_draft: DraftFactory,
    settings: Any,
) -> None:
    postgres_or_missing()
    settings.WEBHOOK_ALLOW_HTTP = True
    broker = make_broker("redis", tmp_path)
    use_broker(broker)
    worker = start_worker(
        broker,
        concurrency=1,
        WEBHOOK_ALLOW_HTTP="1",
        WEBHOOK_ALLOWED_CIDRS="127.0.0.1/32",
        **smtp_server.env(),
    )
    wait_worker_ready(worker)
    _, secret = webhook_endpoint_create(
        actor=requester, team=team, url=http_receiver.url, events=["request_approved"]
    )

    identity_request = identity_request_create(requester=requester, draft=make_draft())
    identity_request_approve(identity_request=identity_request, approver=approver)

    pending = Notification.objects.exclude(channel="inbox").exclude(status=DeliveryStatus.DELIVERED)
    assert wait_until(lambda: not pending.exists(), timeout=60), worker.log_tail()
    (received,) = http_receiver.requests
    payload = Webhook(secret).verify(received.body, received.headers)
    assert payload["data"]["identity_request"]["id"] == identity_request.pk
    # (The worker also takes the provisioning the approval asked for; with no Azure here it
    # fails, and that is told too: only the two events of this test are checked.)
    arrived = {(m["To"], m["Subject"]) for m in smtp_server.messages}
    pk = identity_request.pk
    assert {
        ("sam@example.test", f"Request #{pk} for checkout (payments) waits for your approval"),
        ("alice@example.test", f"Request #{pk} for checkout (payments) was approved"),
    } <= arrived
