"""Webhooks: rows from the same outbox, signed per Standard Webhooks (checked by the library's
own Webhook.verify in a real HTTP receiver), the SSRF guard, retries, disabling, redelivery."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from identities.errors import DomainError, PermissionDeniedError
from identities.models import (
    AuditEvent,
    DeliveryStatus,
    Notification,
    NotificationChannel,
    WebhookDelivery,
    WebhookEndpoint,
)
from identities.services import (
    identity_request_approve,
    identity_request_reject,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
    webhook_redeliver,
)
from identities.services.webhooks import validate_webhook_url
from identities.work import Work
from notifications import tasks
from notifications.webhooks import WebhookRefusedError, resolve
from tests.identities.conftest import FileRequest
from tests.support.http_receiver import Receiver

pytestmark = pytest.mark.django_db

LOCAL = ["127.0.0.1/32"]  # the allow-list that admits the test's own receiver


@pytest.fixture
def local_receivers_allowed(settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_CIDRS = LOCAL
    settings.WEBHOOK_ALLOW_HTTP = True  # the test receiver speaks plain HTTP
    settings.WEBHOOK_BACKOFF_SECONDS = 0


def webhook_rows() -> Any:
    return Notification.objects.filter(channel=NotificationChannel.WEBHOOK)


def sweep_webhooks() -> dict[str, int]:
    """The delivery task on every pending webhook row (the email rows are not this test's)."""
    pending = webhook_rows().filter(status=DeliveryStatus.PENDING, endpoint__is_active=True)
    return tasks.deliver(list(pending.values_list("key", flat=True)))


def test_a_teams_endpoint_gets_its_chosen_events_signed_and_verifiable(
    local_receivers_allowed: None,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    endpoint, secret = webhook_endpoint_create(
        actor=requester, team=team, url=http_receiver.url, events=["request_approved"]
    )
    assert secret.startswith("whsec_")
    assert secret not in json.dumps(AuditEvent.objects.get(action="webhook.created").data)
    identity_request = file_request()
    assert not webhook_rows().exists(), "filing was not chosen"

    identity_request_approve(identity_request=identity_request, approver=approver)
    (row,) = webhook_rows()
    assert row.endpoint == endpoint

    assert tasks.deliver([row.key]) == {"delivered": 1}

    (received,) = http_receiver.requests
    payload = Webhook(secret).verify(received.body, received.headers)
    assert payload["type"] == "identity_portal.request_approved"
    assert payload["data"]["identity_request"]["id"] == identity_request.pk
    assert payload["data"]["actor"] == "sam"
    assert received.headers["webhook-id"] == row.message_id
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(received.body, received.headers)
    (log,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert (log.status_code, log.error) == (200, "")


def test_endpoints_of_other_teams_hear_nothing_and_global_ones_hear_everything(
    local_receivers_allowed: None,
    http_receiver: Receiver,
    requester: Any,
    outsider: Any,
    other_team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    webhook_endpoint_create(
        actor=outsider, team=other_team, url=http_receiver.url, events=["request_filed"]
    )
    security, _ = webhook_endpoint_create(
        actor=approver, team=None, url=http_receiver.url, events=["request_filed"]
    )
    file_request()
    assert [row.endpoint for row in webhook_rows()] == [security]


def test_rotation_signs_with_both_secrets_during_the_grace_period(
    local_receivers_allowed: None,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    endpoint, old = webhook_endpoint_create(
        actor=requester, team=team, url=http_receiver.url, events=["request_rejected"]
    )
    endpoint, new = webhook_endpoint_rotate_secret(actor=requester, endpoint=endpoint)
    assert new != old

    identity_request_reject(identity_request=file_request(), approver=approver, comment="No.")
    assert sweep_webhooks() == {"delivered": 1}
    (received,) = http_receiver.requests
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(received.body, received.headers)
    Webhook(new).verify(received.body, received.headers)
    event = AuditEvent.objects.get(action="webhook.secret_rotated")
    assert old not in json.dumps(event.data) and new not in json.dumps(event.data)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:9/hook",
        "https://[::1]:9/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/hook",
        "https://[fd00::1]/hook",
        "https://0.0.0.0/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost:9/hook",  # a DNS name resolving to loopback
    ],
)
def test_the_guard_refuses_private_loopback_and_link_local_destinations(url: str) -> None:
    with pytest.raises(WebhookRefusedError, match="address: refused"):
        resolve(url)


def test_the_guard_wants_https_outside_debug(settings: Any) -> None:
    settings.DEBUG = False
    settings.WEBHOOK_ALLOW_HTTP = False
    with pytest.raises(WebhookRefusedError, match="http:// is not allowed"):
        resolve("http://hooks.example.com/x")
    with pytest.raises(DomainError, match="url: must start with https://"):
        validate_webhook_url("http://hooks.example.com/x")


def test_a_refused_destination_is_logged_and_never_contacted(
    settings: Any,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    settings.WEBHOOK_ALLOWED_CIDRS = []  # the receiver is on loopback: not allow-listed now
    settings.WEBHOOK_ALLOW_HTTP = True
    endpoint, _ = webhook_endpoint_create(
        actor=requester, team=team, url=http_receiver.url, events=["request_rejected"]
    )

    identity_request_reject(identity_request=file_request(), approver=approver, comment="No.")
    assert sweep_webhooks() == {"retry": 1}
    assert http_receiver.requests == []
    (log,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert log.status_code is None
    assert log.error == "Refused: the host resolves to a loopback address."


def test_the_team_is_told_the_rule_that_refused_a_host_and_only_operators_its_address(
    settings: Any,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
    client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A name (not an address) in the URL: what it resolves to inside the network is no
    business of the team's, on any page they see; the operators' log has it."""
    settings.WEBHOOK_ALLOWED_HOSTS = []
    settings.WEBHOOK_ALLOWED_CIDRS = []
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_MAX_ATTEMPTS = 1  # given up at once: the reason reaches the endpoint too
    port = http_receiver.server.server_address[1]
    endpoint, _ = webhook_endpoint_create(
        actor=requester,
        team=team,
        url=f"http://localhost:{port}/hooks/portal",
        events=["request_rejected"],
    )
    identity_request_reject(identity_request=file_request(), approver=approver, comment="No.")

    with caplog.at_level("WARNING", logger="notifications.webhooks"):
        assert sweep_webhooks() == {"failed": 1}

    assert http_receiver.requests == []
    shown = "Refused: the host resolves to a loopback address."
    (log,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert log.error == shown
    assert webhook_rows().get(endpoint=endpoint).last_error == shown
    endpoint.refresh_from_db()
    assert endpoint.disabled_reason.endswith(shown)
    told = Notification.objects.filter(event="webhook_disabled")
    assert told.exists() and all(shown in row.data["reason"] for row in told)
    client.force_login(requester)
    page = client.get(f"/webhooks/{endpoint.pk}/").content.decode()
    assert "loopback address" in page
    seen = [page, *told.values_list("data", flat=True), endpoint.disabled_reason]
    for address in ("127.0.0.1", "::1"):
        assert not any(address in str(text) for text in seen), address
    (warning,) = [r for r in caplog.records if r.name == "notifications.webhooks"]
    assert warning.levelname == "WARNING"
    assert "localhost resolves to" in warning.getMessage()
    assert "127.0.0.1" in warning.getMessage() or "::1" in warning.getMessage()


def test_a_redirect_is_not_followed(
    local_receivers_allowed: None,
    http_receiver: Receiver,
    second_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    for target in ("https://169.254.169.254/latest/meta-data/", second_receiver.url):
        http_receiver.status, http_receiver.location = 302, target
        endpoint, _ = webhook_endpoint_create(
            actor=requester, team=team, url=http_receiver.url, events=["request_rejected"]
        )

        identity_request_reject(
            identity_request=file_request(service_account=f"sa{len(target)}"),
            approver=approver,
            comment="No.",
        )
        assert sweep_webhooks() == {"retry": 1}
        (log,) = WebhookDelivery.objects.filter(endpoint=endpoint)
        assert log.status_code == 302
        assert f"Redirect to {target!r} not followed." in log.error
        webhook_endpoint_update(actor=requester, endpoint=endpoint, is_active=False)
    assert second_receiver.requests == [], "the redirect's target was never called"


def test_persistent_failure_disables_the_endpoint_and_tells_the_team_then_redelivery(
    local_receivers_allowed: None,
    settings: Any,
    http_receiver: Receiver,
    requester: Any,
    teammate: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    http_receiver.status = 503
    endpoint, _ = webhook_endpoint_create(
        actor=requester, team=team, url=http_receiver.url, events=["request_rejected"]
    )

    identity_request_reject(identity_request=file_request(), approver=approver, comment="No.")
    assert sweep_webhooks() == {"retry": 1}
    assert sweep_webhooks() == {"retry": 1}
    assert sweep_webhooks() == {"failed": 1}
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert "after 3 attempts: The receiver answered 503." in endpoint.disabled_reason
    assert [d.status_code for d in endpoint.deliveries.all()] == [503, 503, 503]
    told = Notification.objects.filter(event="webhook_disabled", channel="inbox")
    assert sorted(told.values_list("recipient__username", flat=True)) == ["alice", "carol"]
    assert AuditEvent.objects.filter(action="webhook.disabled", actor=None).count() == 1

    # Fixed: switched back on and redelivered by the team.
    http_receiver.status = 204
    webhook_endpoint_update(actor=requester, endpoint=endpoint, is_active=True)
    row = Notification.objects.get(channel=NotificationChannel.WEBHOOK)
    webhook_redeliver(actor=requester, notification=row)
    assert sweep_webhooks() == {"delivered": 1}
    row.refresh_from_db()
    assert row.status == DeliveryStatus.DELIVERED
    assert len(http_receiver.requests) == 4


def test_who_may_manage_endpoints(
    requester: Any, outsider: Any, team: Any, approver: Any, auditor: Any
) -> None:
    with pytest.raises(PermissionDeniedError):
        webhook_endpoint_create(
            actor=outsider, team=team, url="https://hooks.example.com/", events=["request_filed"]
        )
    with pytest.raises(PermissionDeniedError):
        webhook_endpoint_create(
            actor=requester, team=None, url="https://hooks.example.com/", events=["request_filed"]
        )
    endpoint, _ = webhook_endpoint_create(
        actor=requester, team=team, url="https://hooks.example.com/", events=["request_filed"]
    )
    for stranger in (outsider, auditor):
        with pytest.raises(PermissionDeniedError):
            webhook_endpoint_rotate_secret(actor=stranger, endpoint=endpoint)
    with pytest.raises(DomainError, match="events: unknown events everything"):
        webhook_endpoint_update(actor=requester, endpoint=endpoint, events=["everything"])
    assert WebhookEndpoint.objects.count() == 1


def test_emails_and_webhooks_of_one_event_go_out_in_separate_messages(
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
    work_sent: list[tuple[Work, tuple[object, ...]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    webhook_endpoint_create(
        actor=requester, team=team, url="https://hooks.example.com/", events=["request_filed"]
    )
    with django_capture_on_commit_callbacks(execute=True):
        file_request()
    emails = list(Notification.objects.filter(channel="email").values_list("key", flat=True))
    hooks = list(webhook_rows().values_list("key", flat=True))
    assert work_sent == [
        (Work.DELIVER_NOTIFICATIONS, (emails,)),
        (Work.DELIVER_NOTIFICATIONS, (hooks,)),
    ]


def test_the_webhook_id_is_opaque_and_the_same_on_every_attempt_of_one_message(
    local_receivers_allowed: None,
    settings: Any,
    http_receiver: Receiver,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    """Standard Webhooks: `webhook-id` is unique per message and the same when the message is
    sent again (receivers de-duplicate on it); it must not expose internal sequential ids."""
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    http_receiver.status = 503
    endpoint, _ = webhook_endpoint_create(
        actor=requester, team=team, url=http_receiver.url, events=["request_rejected"]
    )
    identity_request_reject(identity_request=file_request(), approver=approver, comment="No.")
    assert sweep_webhooks() == {"retry": 1}
    assert sweep_webhooks() == {"failed": 1}
    http_receiver.status = 204
    webhook_endpoint_update(actor=requester, endpoint=endpoint, is_active=True)
    first = Notification.objects.get(channel=NotificationChannel.WEBHOOK)
    webhook_redeliver(actor=requester, notification=first)
    assert sweep_webhooks() == {"delivered": 1}
    identity_request_reject(
        identity_request=file_request(service_account="other"), approver=approver, comment="No."
    )
    assert sweep_webhooks() == {"delivered": 1}

    ids = [received.headers["webhook-id"] for received in http_receiver.requests]
    assert len(ids) == 4
    assert ids[0] == ids[1] == ids[2] == first.message_id, "retries and redelivery keep the id"
    assert ids[3] != ids[0], "another message, another id"
    second = webhook_rows().exclude(pk=first.pk).get()
    for message_id, row in ((ids[0], first), (ids[3], second)):
        # 128 random bits: no row id, audit id or endpoint id in it (the key has those).
        assert re.fullmatch(r"msg_[0-9a-f]{32}", message_id)
        assert message_id == row.message_id and row.key not in message_id
