"""The SSRF guard's https path against a real TLS receiver: the connection goes to the vetted
address with the URL's name as SNI, the certificate chain is verified against the system store
plus WEBHOOK_CA_BUNDLE, and a certificate for another name (or no trusted CA) is refused before
anything is sent."""

from __future__ import annotations

from typing import Any

import pytest
from standardwebhooks import Webhook

from identities.models import DeliveryStatus, WebhookDelivery
from identities.services import identity_request_approve, webhook_endpoint_create
from notifications import tasks
from notifications.webhooks import post
from tests.identities.conftest import FileRequest
from tests.notifications.test_webhooks import webhook_rows
from tests.support.tls_receiver import TlsReceiverFactory

pytestmark = pytest.mark.django_db

HEADERS = {"content-type": "application/json"}


def test_an_outbox_row_goes_over_verified_tls_with_sni_to_the_vetted_address(
    production_guard: None,
    tls_receiver_for: TlsReceiverFactory,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    receiver = tls_receiver_for("localhost")
    endpoint, secret = webhook_endpoint_create(
        actor=requester, team=team, url=receiver.url("localhost"), events=["request_approved"]
    )
    identity_request_approve(identity_request=file_request(), approver=approver)
    (row,) = webhook_rows()

    assert tasks.deliver([row.key]) == {"delivered": 1}

    (received,) = receiver.requests
    assert receiver.server_names == ["localhost"], "SNI carries the URL's name"
    assert receiver.peers == ["127.0.0.1"], "the socket went to the vetted address"
    assert received.headers["host"] == f"localhost:{receiver.port}"
    assert Webhook(secret).verify(received.body, received.headers)["type"] == (
        "identity_portal.request_approved"
    )
    (log,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert (log.status_code, log.error) == (200, "")


def test_a_certificate_for_another_name_is_refused(
    production_guard: None, tls_receiver_for: TlsReceiverFactory
) -> None:
    receiver = tls_receiver_for("hooks.elsewhere.example")  # trusted CA, wrong name

    result = post(receiver.url("localhost"), body="{}", headers=HEADERS)

    assert result.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert "Hostname mismatch" in result.error
    assert receiver.requests == [], "nothing is sent over an unverified connection"


def test_the_address_is_not_a_name_the_certificate_covers(
    production_guard: None, settings: Any, tls_receiver_for: TlsReceiverFactory
) -> None:
    receiver = tls_receiver_for("localhost")
    settings.WEBHOOK_ALLOWED_CIDRS = ["127.0.0.1/32"]  # admitted by the guard…

    result = post(receiver.url("127.0.0.1"), body="{}", headers=HEADERS)

    # …but the certificate names localhost, not 127.0.0.1: verified against the URL's host.
    assert result.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert "IP address mismatch" in result.error
    assert receiver.requests == []


def test_without_the_bundle_the_test_ca_is_not_trusted(
    production_guard: None, settings: Any, tls_receiver_for: TlsReceiverFactory
) -> None:
    receiver = tls_receiver_for("localhost")
    settings.WEBHOOK_CA_BUNDLE = ""

    result = post(receiver.url("localhost"), body="{}", headers=HEADERS)

    assert result.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert "unable to get local issuer certificate" in result.error
    assert receiver.requests == []


def test_a_failed_handshake_is_a_retried_delivery_like_any_other(
    production_guard: None,
    tls_receiver_for: TlsReceiverFactory,
    requester: Any,
    team: Any,
    approver: Any,
    file_request: FileRequest,
) -> None:
    receiver = tls_receiver_for("hooks.elsewhere.example")
    endpoint, _ = webhook_endpoint_create(
        actor=requester, team=team, url=receiver.url("localhost"), events=["request_approved"]
    )
    identity_request_approve(identity_request=file_request(), approver=approver)
    (row,) = webhook_rows()

    assert tasks.services.notification_deliver(key=row.key) == "retry"

    row.refresh_from_db()
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    (log,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert log.status_code is None and "Hostname mismatch" in log.error
