"""/api/v1/webhooks/: register (the secret once), validate, change, rotate, the delivery log,
redeliver; a team's endpoints are invisible to other teams."""

from __future__ import annotations

from typing import Any

import pytest
from standardwebhooks import Webhook

from accounts.models import IdempotencyRecord
from identities.models import AuditEvent, WebhookEndpoint
from identities.services import identity_request_create, identity_request_reject
from notifications import tasks
from tests.support.http_receiver import Receiver
from tests.support.people import DraftFactory

pytestmark = pytest.mark.django_db

WEBHOOKS = "/api/v1/webhooks/"


def test_registering_returns_the_secret_once_and_the_receiver_verifies_with_it(
    requester: Any,
    approver: Any,
    client_for: Any,
    http_receiver: Receiver,
    make_draft: DraftFactory,
    settings: Any,
) -> None:
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_CIDRS = ["127.0.0.1/32"]
    client = client_for(requester)
    created = client.post(
        WEBHOOKS,
        {"team": "payments", "url": http_receiver.url, "events": ["request_rejected"]},
        HTTP_IDEMPOTENCY_KEY="hook-1",
    )
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    endpoint_url = created["Location"]
    replay = client.post(
        WEBHOOKS,
        {"team": "payments", "url": http_receiver.url, "events": ["request_rejected"]},
        HTTP_IDEMPOTENCY_KEY="hook-1",
    )
    assert replay.json()["secret"] == "", "a replay never carries the secret"
    assert "secret" not in client.get(endpoint_url).json()

    identity_request_reject(
        identity_request=identity_request_create(requester=requester, draft=make_draft()),
        approver=approver,
        comment="Too broad.",
    )
    tasks.sweep()
    (received,) = http_receiver.requests
    assert Webhook(secret).verify(received.body, received.headers)["data"]["comment"] == (
        "Too broad."
    )
    log = client.get(f"{endpoint_url}deliveries/").json()
    assert [(d["status_code"], d["event"]) for d in log] == [(200, "request_rejected")]

    redelivered = client.post(f"{endpoint_url}deliveries/{log[0]['id']}/redeliver/")
    assert redelivered.status_code == 202
    tasks.sweep()
    assert len(http_receiver.requests) == 2
    assert http_receiver.requests[1].headers["webhook-id"] == received.headers["webhook-id"]


def test_bad_input_names_the_field_and_the_rule(requester: Any, client_for: Any) -> None:
    client = client_for(requester)
    response = client.post(
        WEBHOOKS,
        {"team": "payments", "url": "http://user:pw@hooks.example.com/#x", "events": ["x"]},
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert {e["field"] for e in response.json()["errors"]} == {"events[0]"}

    response = client.post(
        WEBHOOKS,
        {
            "team": "payments",
            "url": "http://user:pw@hooks.example.com/#x",
            "events": ["request_filed"],
        },
    )
    rules = {(e["field"], e["rule"]) for e in response.json()["errors"]}
    assert rules == {
        ("url", "https_required"),
        ("url", "no_credentials"),
        ("url", "no_fragment"),
    }
    response = client.post(
        WEBHOOKS, {"team": "nobody", "url": "https://h.example.com/", "events": ["request_filed"]}
    )
    assert response.json()["errors"][0]["field"] == "team"
    assert not WebhookEndpoint.objects.exists()


def test_rotation_and_changes_are_audited_and_other_teams_see_nothing(
    requester: Any, outsider: Any, client_for: Any
) -> None:
    client = client_for(requester)
    created = client.post(
        WEBHOOKS,
        {"team": "payments", "url": "https://hooks.example.com/a", "events": ["request_filed"]},
    ).json()
    rotated = client.post(f"{WEBHOOKS}{created['id']}/rotate-secret/").json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    changed = client.patch(f"{WEBHOOKS}{created['id']}/", {"is_active": False}).json()
    assert changed["is_active"] is False

    assert client_for(outsider).get(WEBHOOKS).json()["results"] == []
    assert client_for(outsider).get(f"{WEBHOOKS}{created['id']}/").status_code == 404
    actions = list(AuditEvent.objects.values_list("action", flat=True).order_by("id"))
    assert actions == ["webhook.created", "webhook.secret_rotated", "webhook.updated"]
    assert all("whsec_" not in str(r.response_body) for r in IdempotencyRecord.objects.all())


def test_the_format_is_chosen_read_changed_and_validated(
    requester: Any, outsider: Any, client_for: Any
) -> None:
    client = client_for(requester)
    body = {"team": "payments", "url": "https://h.example.com/", "events": ["request_filed"]}
    bad = client.post(WEBHOOKS, {**body, "format": "discord"})
    assert bad.status_code == 400
    assert [e["field"] for e in bad.json()["errors"]] == ["format"]
    assert client.post(WEBHOOKS, body).json()["format"] == "standard", "the default"
    created = client.post(WEBHOOKS, {**body, "format": "teams"})
    assert created.status_code == 201 and created.json()["format"] == "teams"
    changed = client.patch(
        created["Location"], {"format": "slack"}, content_type="application/json"
    )
    assert changed.json()["format"] == "slack"
    assert WebhookEndpoint.objects.get(pk=created.json()["id"]).format == "slack"
    refused = client_for(outsider).patch(
        created["Location"], {"format": "standard"}, content_type="application/json"
    )
    assert refused.status_code == 404
