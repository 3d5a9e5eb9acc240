"""Teams and Slack endpoints: the same outbox rows, delivered as the chat message each incoming
webhook takes (exact JSON checked in a real HTTP receiver), unsigned, through the same SSRF
guard, retries and delivery log as a standard endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest

from identities.errors import PolicyViolationError
from identities.models import AuditEvent, DeliveryStatus, WebhookDelivery
from identities.services import (
    identity_request_approve,
    identity_request_reject,
    webhook_endpoint_create,
    webhook_endpoint_update,
)
from notifications import tasks
from tests.identities.conftest import FileRequest
from tests.notifications.test_webhooks import local_receivers_allowed, webhook_rows
from tests.support.http_receiver import Receiver

pytestmark = pytest.mark.django_db

__all__ = ["local_receivers_allowed"]  # the fixture, shared with the standard-format tests

BASE = "https://portal.example.test"


@pytest.fixture
def portal_base(settings: Any) -> None:
    settings.PORTAL_BASE_URL = BASE


def _deliver_all() -> dict[str, int]:
    return tasks.deliver(list(webhook_rows().values_list("key", flat=True)))


def test_a_teams_endpoint_gets_an_adaptive_card_unsigned(
    local_receivers_allowed: None,
    portal_base: None,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    endpoint, _ = webhook_endpoint_create(
        actor=requester,
        team=team,
        url=http_receiver.url,
        events=["request_rejected"],
        format="teams",
    )
    identity_request = file_request()
    identity_request_reject(identity_request=identity_request, approver=approver, comment="No.")

    assert _deliver_all() == {"delivered": 1}

    (received,) = http_receiver.requests
    pk = identity_request.pk
    assert json.loads(received.body) == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": f"Request #{pk} for {identity_request.app_name} "
                            f"({team.name}) was rejected",
                            "weight": "Bolder",
                            "size": "Medium",
                            "wrap": True,
                        },
                        {
                            "type": "FactSet",
                            "facts": [
                                {"title": "App", "value": identity_request.app_name},
                                {"title": "Team", "value": team.name},
                                {"title": "Cluster", "value": identity_request.cluster.name},
                                {"title": "By", "value": approver.username},
                                {"title": "Comment", "value": "No."},
                            ],
                        },
                    ],
                    "actions": [
                        {
                            "type": "Action.OpenUrl",
                            "title": "Open in the portal",
                            "url": f"{BASE}/requests/{pk}/",
                        }
                    ],
                },
            }
        ],
    }
    assert received.headers["content-type"] == "application/json"
    assert not {"webhook-id", "webhook-signature", "webhook-timestamp"} & set(received.headers)
    assert endpoint.secret not in received.body.decode()
    (log,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert (log.status_code, log.error) == (200, "")


def test_a_slack_endpoint_gets_block_kit_with_a_fallback_text(
    local_receivers_allowed: None,
    portal_base: None,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    webhook_endpoint_create(
        actor=requester,
        team=team,
        url=http_receiver.url,
        events=["request_approved"],
        format="slack",
    )
    identity_request = file_request()
    identity_request_approve(identity_request=identity_request, approver=approver)

    assert _deliver_all() == {"delivered": 1}

    (received,) = http_receiver.requests
    pk = identity_request.pk
    title = f"Request #{pk} for {identity_request.app_name} ({team.name}) was approved"
    link = f"{BASE}/requests/{pk}/"
    assert json.loads(received.body) == {
        "text": f"{title}: <{link}|Open in the portal>",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*App*\n{identity_request.app_name}"},
                    {"type": "mrkdwn", "text": f"*Team*\n{team.name}"},
                    {"type": "mrkdwn", "text": f"*Cluster*\n{identity_request.cluster.name}"},
                    {"type": "mrkdwn", "text": f"*By*\n{approver.username}"},
                ],
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in the portal"},
                        "url": link,
                    }
                ],
            },
        ],
    }
    assert "webhook-signature" not in received.headers


def test_slack_mrkdwn_is_escaped(
    local_receivers_allowed: None,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    webhook_endpoint_create(
        actor=requester,
        team=team,
        url=http_receiver.url,
        events=["request_rejected"],
        format="slack",
    )
    identity_request_reject(
        identity_request=file_request(), approver=approver, comment="<!channel> a & b"
    )
    assert _deliver_all() == {"delivered": 1}
    fields = json.loads(http_receiver.requests[0].body)["blocks"][1]["fields"]
    assert fields[-1] == {"type": "mrkdwn", "text": "*Comment*\n&lt;!channel&gt; a &amp; b"}


def test_chat_formats_share_the_guard_retries_and_log(
    local_receivers_allowed: None,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
    settings: Any,
) -> None:
    teams, _ = webhook_endpoint_create(
        actor=requester,
        team=team,
        url=http_receiver.url,
        events=["request_approved"],
        format="teams",
    )
    http_receiver.status = 500
    identity_request_approve(identity_request=file_request(), approver=approver)
    (row,) = webhook_rows()
    assert tasks.services.notification_deliver(key=row.key) == "retry"
    row.refresh_from_db()
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    http_receiver.status = 200
    assert tasks.services.notification_deliver(key=row.key) == "delivered"
    assert [d.status_code for d in WebhookDelivery.objects.filter(endpoint=teams)] == [200, 500]

    settings.WEBHOOK_ALLOWED_CIDRS = []  # the guard applies whatever the format
    webhook_endpoint_update(actor=requester, endpoint=teams, url="http://127.0.0.1:9/x")
    identity_request_approve(
        identity_request=file_request(app_name="second", service_account="second"),
        approver=approver,
    )
    row = webhook_rows().get(status=DeliveryStatus.PENDING)
    assert tasks.services.notification_deliver(key=row.key) == "retry"
    row.refresh_from_db()
    assert row.last_error == "Refused: the host resolves to a loopback address."


def test_format_is_validated_and_audited(requester: Any, team: Any) -> None:
    with pytest.raises(PolicyViolationError) as caught:
        webhook_endpoint_create(
            actor=requester,
            team=team,
            url="https://hooks.example.com/x",
            events=["request_approved"],
            format="discord",
        )
    (violation,) = caught.value.violations
    assert (violation.field, violation.rule) == ("format", "unknown_format")
    endpoint, _ = webhook_endpoint_create(
        actor=requester,
        team=team,
        url="https://hooks.example.com/x",
        events=["request_approved"],
        format="slack",
    )
    webhook_endpoint_update(actor=requester, endpoint=endpoint, format="teams")
    formats = [e.data["format"] for e in AuditEvent.objects.filter(action__startswith="webhook.")]
    assert formats == ["slack", "teams"]
