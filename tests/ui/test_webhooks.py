"""The webhooks pages: register (the secret shown once), the delivery log with redeliver,
switching off and on; another team's webhook is a 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import AuditEvent, Notification, WebhookDelivery, WebhookEndpoint
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


def test_registering_shows_the_secret_once_and_names_bad_fields(
    client_for: ClientFor, requester: Any, outsider: Any
) -> None:
    client = client_for(requester)
    bad = client.post(
        reverse("webhook_list"),
        {"team": "payments", "url": "http://hooks.example.com/x", "events": ["request_filed"]},
    )
    assert bad.status_code == 400
    assert "must start with https://." in bad.content.decode()

    created = client.post(
        reverse("webhook_list"),
        {"team": "payments", "url": "https://hooks.example.com/x", "events": ["request_ready"]},
    )
    html = created.content.decode()
    endpoint = WebhookEndpoint.objects.get()
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    assert f'data-testid="webhook-secret">{endpoint.secret}<' in html
    again = client.get(reverse("webhook_list")).content.decode()
    assert endpoint.secret not in again and "https://hooks.example.com/x" in again
    # Another team can neither register for payments nor see payments' webhook.
    refused = client_for(outsider).post(
        reverse("webhook_list"),
        {"team": "payments", "url": "https://hooks.example.com/y", "events": ["request_ready"]},
    )
    assert refused.status_code == 400
    assert (
        client_for(outsider).get(reverse("webhook_detail", args=[endpoint.pk])).status_code == 404
    )


def test_the_log_offers_redelivery_of_failed_attempts(
    client_for: ClientFor, requester: Any
) -> None:
    client = client_for(requester)
    client.post(
        reverse("webhook_list"),
        {"team": "payments", "url": "https://hooks.example.com/x", "events": ["request_ready"]},
    )
    endpoint = WebhookEndpoint.objects.get()
    notification = Notification.objects.create(
        key="k1", event="request_ready", channel="webhook", endpoint=endpoint, status="failed"
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        notification=notification,
        status_code=500,
        error="The receiver answered 500.",
    )
    page = client.get(reverse("webhook_detail", args=[endpoint.pk])).content.decode()
    assert "The receiver answered 500." in page and "Redeliver" in page

    client.post(reverse("webhook_redeliver", args=[endpoint.pk, delivery.pk]))
    notification.refresh_from_db()
    assert notification.status == "pending"
    assert AuditEvent.objects.filter(action="webhook.redelivered", actor=requester).exists()

    client.post(reverse("webhook_toggle", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert not endpoint.is_active


def test_a_teams_or_slack_format_is_chosen_on_the_form_and_shown(
    client_for: ClientFor, requester: Any
) -> None:
    client = client_for(requester)
    form = client.get(reverse("webhook_list")).content.decode()
    assert 'name="format"' in form and "Microsoft Teams incoming webhook" in form
    client.post(
        reverse("webhook_list"),
        {
            "team": "payments",
            "url": "https://example.webhook.office.com/x",
            "format": "teams",
            "events": ["request_ready"],
        },
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.format == "teams"
    detail = client.get(reverse("webhook_detail", args=[endpoint.pk])).content.decode()
    assert "format: Microsoft Teams incoming webhook (Adaptive Card)" in detail
    bad = client.post(
        reverse("webhook_list"),
        {
            "team": "payments",
            "url": "https://hooks.slack.com/x",
            "format": "discord",
            "events": ["request_ready"],
        },
    )
    assert bad.status_code == 400
    assert "Select a valid choice. discord is not one of the available choices." in (
        bad.content.decode()
    )
