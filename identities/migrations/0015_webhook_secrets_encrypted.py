"""Webhook signing secrets encrypted at rest (identities.encryption): the columns become text
(a Fernet token is longer than the secret), then every existing row is encrypted in place. Raw
SQL, since the field itself would try to decrypt the plaintext it reads. Reversible: backwards,
the rows are decrypted, then the columns go back to varchar(100)."""

from collections.abc import Callable
from typing import Any

from django.db import migrations

import identities.encryption
from identities.encryption import decrypt, encrypt, is_encrypted

COLUMNS = ("secret", "previous_secret")


def _rewrite(apps: Any, schema_editor: Any, change: Callable[[str], str | None]) -> None:
    endpoint = apps.get_model("identities", "WebhookEndpoint")
    connection = schema_editor.connection
    table = connection.ops.quote_name(endpoint._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, {', '.join(COLUMNS)} FROM {table}")  # noqa: S608 - names only
        rows = cursor.fetchall()
        for pk, *values in rows:
            new = [change(value) if value else None for value in values]
            if all(value is None for value in new):
                continue
            assignments = ", ".join(f"{column} = %s" for column in COLUMNS)
            cursor.execute(
                f"UPDATE {table} SET {assignments} WHERE id = %s",  # noqa: S608 - names only
                [n if n is not None else v for n, v in zip(new, values, strict=True)] + [pk],
            )


def encrypt_existing(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, schema_editor, lambda value: None if is_encrypted(value) else encrypt(value))


def decrypt_existing(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, schema_editor, lambda value: decrypt(value) if is_encrypted(value) else None)


class Migration(migrations.Migration):
    dependencies = [
        ("identities", "0014_webhook_format"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhookendpoint",
            name="previous_secret",
            field=identities.encryption.EncryptedTextField(blank=True),
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="secret",
            field=identities.encryption.EncryptedTextField(),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
