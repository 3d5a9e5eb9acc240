"""Webhook signing secrets at rest: stored encrypted (FIELD_ENCRYPTION_KEYS, Fernet), existing rows
encrypted by the migration, the key rotated with `reencrypt_secrets`; and the secret is in the
create and rotate answers only: no list, detail, page, delivery log or audit row shows it again."""

from __future__ import annotations

import hashlib
import importlib
import json
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.management import call_command
from django.db import connection

from identities.encryption import FieldDecryptionError
from identities.models import AuditEvent, WebhookEndpoint
from identities.services.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
)
from tests.support.services import run_manage

pytestmark = pytest.mark.django_db

WEBHOOKS = "/api/v1/webhooks/"
MIGRATION = importlib.import_module("identities.migrations.0015_webhook_secrets_encrypted")


def stored(endpoint: WebhookEndpoint) -> tuple[str, str]:
    """The columns as the database holds them (no field conversion)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret, previous_secret FROM identities_webhookendpoint WHERE id = %s",
            [endpoint.pk],
        )
        secret, previous = cursor.fetchone()
    return secret, previous


def test_the_secret_and_the_previous_one_are_stored_encrypted(
    requester: Any, team: Any, settings: Any
) -> None:
    endpoint, first = webhook_endpoint_create(
        actor=requester, team=team, url="https://hooks.example.com/x", events=["request_ready"]
    )
    endpoint, second = webhook_endpoint_rotate_secret(actor=requester, endpoint=endpoint)

    secret_column, previous_column = stored(endpoint)
    for column, plaintext in ((secret_column, second), (previous_column, first)):
        assert plaintext not in column and not column.startswith("whsec_")
        assert Fernet(settings.FIELD_ENCRYPTION_KEYS[0]).decrypt(column.encode()).decode() == (
            plaintext
        )
    # The portal reads them back to sign with.
    reloaded = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert reloaded.signing_secrets() == [second, first]


def test_the_migration_encrypts_existing_rows_once_and_reverses(requester: Any, team: Any) -> None:
    endpoint, secret = webhook_endpoint_create(
        actor=requester, team=team, url="https://hooks.example.com/x", events=["request_ready"]
    )
    with connection.cursor() as cursor:  # a row as it was before the migration: plain text
        cursor.execute(
            "UPDATE identities_webhookendpoint SET secret = %s WHERE id = %s", [secret, endpoint.pk]
        )
    editor = SimpleNamespace(connection=connection)

    MIGRATION.encrypt_existing(apps, editor)
    encrypted, previous = stored(endpoint)
    MIGRATION.encrypt_existing(apps, editor)  # run twice: nothing encrypted twice

    assert encrypted != secret and previous == ""
    assert stored(endpoint)[0] == encrypted
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    MIGRATION.decrypt_existing(apps, editor)
    assert stored(endpoint) == (secret, "")


def test_a_new_key_first_keeps_old_secrets_readable_until_reencrypted(
    requester: Any, team: Any, settings: Any
) -> None:
    endpoint, secret = webhook_endpoint_create(
        actor=requester, team=team, url="https://hooks.example.com/x", events=["request_ready"]
    )
    old, new = settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()

    settings.FIELD_ENCRYPTION_KEYS = [new]
    with pytest.raises(FieldDecryptionError, match="FIELD_ENCRYPTION_KEYS"):
        WebhookEndpoint.objects.get(pk=endpoint.pk)

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    call_command("reencrypt_secrets", verbosity=0)

    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key dropped
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    event = AuditEvent.objects.get(action="webhook.secrets_reencrypted")
    assert event.data == {"endpoints": 1, "keys": 2}
    assert secret not in json.dumps(event.data)


def test_production_requires_the_key_and_names_a_bad_one_without_echoing_it() -> None:
    missing = run_manage("check", DEBUG="0", SECRET_KEY="k" * 60)
    bad = run_manage(
        "check", DEBUG="0", SECRET_KEY="k" * 60, FIELD_ENCRYPTION_KEYS="not-a-key-at-all"
    )

    assert missing.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS is required when DEBUG is off" in missing.stderr
    assert bad.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS: key 1 is not a Fernet key" in bad.stderr
    assert "not-a-key-at-all" not in bad.stderr


def test_the_secret_is_shown_at_creation_and_rotation_and_never_again(
    requester: Any, auditor: Any, client_for: Any
) -> None:
    client = client_for(requester)
    created = client.post(
        WEBHOOKS,
        {"team": "payments", "url": "https://hooks.example.com/x", "events": ["request_ready"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    endpoint_url = created["Location"]
    first = created.json()["secret"]
    rotated = client.post(f"{endpoint_url}rotate-secret/")
    assert rotated.status_code == 200, rotated.content
    second = rotated.json()["secret"]
    assert first.startswith("whsec_") and second.startswith("whsec_") and first != second
    pk = WebhookEndpoint.objects.get().pk

    reads = [
        client.get(WEBHOOKS),
        client.get(endpoint_url),
        client.get(f"{endpoint_url}deliveries/"),
        client.get("/webhooks/"),
        client.get(f"/webhooks/{pk}/"),
        client_for(auditor).get("/api/v1/audit-events/"),
        client_for(auditor).get("/audit/"),
    ]

    for response in reads:
        assert response.status_code == 200, (response.wsgi_request.path, response.status_code)
        body = response.content.decode()
        assert first not in body and second not in body, response.wsgi_request.path
    for event in AuditEvent.objects.all():
        assert first not in json.dumps(event.data) and second not in json.dumps(event.data)
    # Not even a few characters of it: the audit keeps a fingerprint of each secret.
    secrets_audited = [
        event.data["secret"] for event in AuditEvent.objects.filter(data__has_key="secret")
    ]
    assert secrets_audited == [
        "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12] for secret in (first, second)
    ]
