"""Webhook URLs encrypted at rest (identities.encryption), as the signing secrets are since 0015:
a Teams or Slack incoming webhook URL is itself the credential. The column becomes text, then
every existing row is encrypted in place (raw SQL, since the field would try to decrypt the
plaintext it reads). Reversible: backwards, the rows are decrypted and the column is varchar
(2000) again."""

from typing import Any

from django.db import migrations

import identities.encryption
from identities.encryption import decrypt, encrypt, is_encrypted


def _rewrite(apps: Any, schema_editor: Any, change: Any) -> None:
    endpoint = apps.get_model("identities", "WebhookEndpoint")
    connection = schema_editor.connection
    table = connection.ops.quote_name(endpoint._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, url FROM {table}")  # noqa: S608 - names only
        for pk, url in cursor.fetchall():
            new = change(url) if url else None
            if new is not None:
                cursor.execute(f"UPDATE {table} SET url = %s WHERE id = %s", [new, pk])  # noqa: S608


def encrypt_existing(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, schema_editor, lambda value: None if is_encrypted(value) else encrypt(value))


def decrypt_existing(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, schema_editor, lambda value: decrypt(value) if is_encrypted(value) else None)


class Migration(migrations.Migration):
    dependencies = [
        ("identities", "0016_notification_message_id"),
    ]

    operations = [
        # Backwards, the rows are decrypted first (RunPython runs in reverse order), then the
        # column shrinks back.
        migrations.AlterField(
            model_name="webhookendpoint",
            name="url",
            field=identities.encryption.EncryptedTextField(),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
