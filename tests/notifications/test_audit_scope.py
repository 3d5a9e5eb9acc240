"""What the audit trail records about notifications and webhooks (docs/audit-scope.md): every
change a person (or the worker) makes to a webhook endpoint is a row, the secret never is; a
person marking notifications read and each delivery attempt are not (the read mark is the
reader's own view; attempts go to the endpoint's delivery log), so neither floods the chain."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from identities.models import AuditEvent, Notification, NotificationChannel, WebhookDelivery
from identities.services import (
    identity_request_reject,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from identities.services.notifications import notifications_mark_read
from identities.services.webhooks import webhook_endpoint_disable
from notifications import tasks
from tests.identities.conftest import FileRequest
from tests.support.http_receiver import Receiver

pytestmark = pytest.mark.django_db


def trail() -> list[tuple[str, str]]:
    return list(AuditEvent.objects.order_by("id").values_list("action", "actor_label"))


def test_every_change_to_an_endpoint_is_audited_with_what_changed_and_never_the_secret(
    requester: Any, team: Any
) -> None:
    endpoint, first = webhook_endpoint_create(
        actor=requester, team=team, url="https://hooks.example.com/a", events=["request_ready"]
    )
    webhook_endpoint_update(actor=requester, endpoint=endpoint, is_active=False)
    webhook_endpoint_update(actor=requester, endpoint=endpoint, is_active=True)
    _, second = webhook_endpoint_rotate_secret(actor=requester, endpoint=endpoint)
    webhook_endpoint_delete(actor=requester, endpoint=endpoint)

    alice = requester.get_username()
    assert trail() == [
        ("webhook.created", alice),
        ("webhook.updated", alice),
        ("webhook.updated", alice),
        ("webhook.secret_rotated", alice),
        ("webhook.deleted", alice),
    ]
    switched_off, switched_on = AuditEvent.objects.filter(action="webhook.updated").order_by("id")
    assert switched_off.data["changed"] == {"is_active": [True, False]}
    assert switched_on.data["changed"] == {"is_active": [False, True]}
    for event in AuditEvent.objects.all():
        assert first not in json.dumps(event.data) and second not in json.dumps(event.data)


def test_marking_notifications_read_writes_no_audit_row(
    approver: Any, file_request: FileRequest
) -> None:
    file_request()
    file_request(service_account="second")
    inbox = Notification.objects.filter(recipient=approver, channel=NotificationChannel.INBOX)
    assert inbox.count() == 2
    before = trail()

    assert notifications_mark_read(user=approver, notification_ids=[inbox[0].pk]) == 1
    client = Client()
    client.force_login(approver)
    assert client.post("/inbox/read/").status_code == 302  # "mark all read", as the page does

    assert not inbox.filter(read_at__isnull=True).exists()
    assert trail() == before


def test_delivery_attempts_go_to_the_delivery_log_and_only_giving_up_is_audited(
    settings: Any,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    settings.WEBHOOK_ALLOWED_CIDRS = ["127.0.0.1/32"]
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_BACKOFF_SECONDS = 0
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    http_receiver.status = 503
    endpoint, _ = webhook_endpoint_create(
        actor=requester, team=team, url=http_receiver.url, events=["request_rejected"]
    )
    identity_request_reject(identity_request=file_request(), approver=approver, comment="No.")
    row = Notification.objects.get(channel=NotificationChannel.WEBHOOK)
    before = trail()

    assert tasks.deliver([row.key]) == {"retry": 1}
    assert tasks.deliver([row.key]) == {"retry": 1}
    assert trail() == before, "an attempt is not an audit row"
    assert tasks.deliver([row.key]) == {"failed": 1}

    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 3
    assert trail()[len(before) :] == [("webhook.disabled", "system")]


def test_a_chat_webhook_url_is_a_credential_and_never_goes_on_the_trail_or_into_messages(
    requester: Any, team: Any
) -> None:
    secret_path = "/services/T0PORTAL/B0PORTAL/n0tForTheAuditTrail42"
    endpoint, _ = webhook_endpoint_create(
        actor=requester,
        team=team,
        url=f"https://hooks.slack.com{secret_path}",
        events=["request_ready"],
        format="slack",
    )
    webhook_endpoint_update(actor=requester, endpoint=endpoint, description="ops channel")
    webhook_endpoint_disable(endpoint=endpoint, reason="Gave up.")

    rows = AuditEvent.objects.filter(action__startswith="webhook.")
    assert rows.count() == 3
    told = Notification.objects.filter(event="webhook_disabled")
    assert told.exists()
    for data in [*rows.values_list("data", flat=True), *told.values_list("data", flat=True)]:
        assert "n0tForTheAuditTrail42" not in json.dumps(data)
        assert data["url"].startswith("https://hooks.slack.com/… (sha256 ")
