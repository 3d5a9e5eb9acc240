"""Webhook URLs at rest and on screen: every URL is stored encrypted (a Teams or Slack incoming
webhook URL is itself the credential); such a URL is shown on no page, API answer or audit row
after it was given, only its scheme, host and a SHA-256 prefix; a standard receiver's URL is shown
whole to the people who manage it. Existing rows are encrypted by migration 0017, and
`reencrypt_secrets` rotates the key of the URLs too."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.management import call_command
from django.db import connection

from identities.models import WebhookEndpoint
from identities.services.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db

WEBHOOKS = "/api/v1/webhooks/"
MIGRATION = importlib.import_module("identities.migrations.0017_webhook_url_encrypted")
TEAMS_URL = (
    "https://contoso.webhook.office.com/webhookb2/7f1e0c2a-1b4d-4c8e-9a2f-5d3b6e8c1a90@tenant"
    "/IncomingWebhook/0a1b2c3d4e5f60718293a4b5c6d7e8f9/secret-part-9f8e7d6c"
)
SLACK_URL = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/XyZsEcReTtOkEn0123456789"
STANDARD_URL = "https://receiver.example.com/portal-events"


def stored_url(endpoint: WebhookEndpoint) -> str:
    """The column as the database holds it (no field conversion)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT url FROM identities_webhookendpoint WHERE id = %s", [endpoint.pk])
        return str(cursor.fetchone()[0])


def test_every_url_is_stored_encrypted_and_read_back_whole(
    requester: Any, team: Any, settings: Any
) -> None:
    for url, format in ((TEAMS_URL, "teams"), (SLACK_URL, "slack"), (STANDARD_URL, "standard")):
        endpoint, _secret = webhook_endpoint_create(
            actor=requester, team=team, url=url, events=["request_ready"], format=format
        )
        column = stored_url(endpoint)
        assert url not in column and "hooks" not in column and "https" not in column
        key = Fernet(settings.FIELD_ENCRYPTION_KEYS[0])
        assert key.decrypt(column.encode()).decode() == url
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).url == url  # what deliveries post to


def test_a_chat_url_is_shown_nowhere_after_it_was_given_and_a_standard_one_is_shown_whole(
    requester: Any, auditor: Any, client_for: Any
) -> None:
    client = client_for(requester)
    created = []
    for url, format in ((TEAMS_URL, "teams"), (SLACK_URL, "slack"), (STANDARD_URL, "standard")):
        answer = client.post(
            WEBHOOKS,
            {"team": "payments", "url": url, "events": ["request_ready"], "format": format},
            format="json",
        )
        assert answer.status_code == 201, answer.content
        created.append(answer)
    teams, slack, standard = (
        WebhookEndpoint.objects.get(format=f) for f in ("teams", "slack", "standard")
    )

    assert created[0].json()["url"] == teams.shown_url
    assert teams.shown_url.startswith("https://contoso.webhook.office.com/… (sha256 ")
    assert slack.shown_url.startswith("https://hooks.slack.com/… (sha256 ")
    assert teams.shown_url != WebhookEndpoint(url=TEAMS_URL + "x", format="teams").shown_url
    listed = {row["id"]: row["url"] for row in client.get(WEBHOOKS).json()["results"]}
    assert listed == {
        teams.pk: teams.shown_url,
        slack.pk: slack.shown_url,
        standard.pk: STANDARD_URL,
    }

    reads = [
        *created,
        client.get(WEBHOOKS),
        client.get(f"{WEBHOOKS}{teams.pk}/"),
        client.get(f"{WEBHOOKS}{slack.pk}/"),
        client.get("/webhooks/"),
        client.get(f"/webhooks/{teams.pk}/"),
        client.get(f"/webhooks/{slack.pk}/"),
        client_for(auditor).get("/api/v1/audit-events/"),
        client_for(auditor).get("/audit/"),
    ]
    for response in reads:
        assert response.status_code in (200, 201), response.status_code
        body = response.content.decode()
        for secret_part in ("secret-part-9f8e7d6c", "XyZsEcReTtOkEn0123456789", "webhookb2"):
            assert secret_part not in body, (response.wsgi_request.path, secret_part)
    assert STANDARD_URL in client.get(f"/webhooks/{standard.pk}/").content.decode()
    assert client.get(f"{WEBHOOKS}{standard.pk}/").json()["url"] == STANDARD_URL


def test_the_migration_encrypts_existing_urls_once_and_reverses(requester: Any, team: Any) -> None:
    endpoint, _secret = webhook_endpoint_create(
        actor=requester, team=team, url=SLACK_URL, events=["request_ready"], format="slack"
    )
    with connection.cursor() as cursor:  # a row as it was before the migration: plain text
        cursor.execute(
            "UPDATE identities_webhookendpoint SET url = %s WHERE id = %s", [SLACK_URL, endpoint.pk]
        )
    editor = SimpleNamespace(connection=connection)

    MIGRATION.encrypt_existing(apps, editor)
    encrypted = stored_url(endpoint)
    MIGRATION.encrypt_existing(apps, editor)  # run twice: nothing encrypted twice

    assert encrypted != SLACK_URL and stored_url(endpoint) == encrypted
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).url == SLACK_URL
    MIGRATION.decrypt_existing(apps, editor)
    assert stored_url(endpoint) == SLACK_URL


def test_reencrypting_rotates_the_key_of_the_urls_too(
    requester: Any, team: Any, settings: Any
) -> None:
    endpoint, _secret = webhook_endpoint_create(
        actor=requester, team=team, url=TEAMS_URL, events=["request_ready"], format="teams"
    )
    old, new = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    call_command("reencrypt_secrets", verbosity=0)

    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key dropped
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).url == TEAMS_URL
    assert Fernet(new).decrypt(stored_url(endpoint).encode()).decode() == TEAMS_URL
