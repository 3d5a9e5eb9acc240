"""Encrypt every stored webhook signing secret again with the first of FIELD_ENCRYPTION_KEYS.

Key rotation: set FIELD_ENCRYPTION_KEYS=<new>,<old>, deploy, run
`manage.py reencrypt_secrets`, then set FIELD_ENCRYPTION_KEYS=<new>. Audited.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from identities.services.webhooks import webhook_secrets_reencrypt


class Command(BaseCommand):
    help = "Encrypt stored webhook secrets again with the first FIELD_ENCRYPTION_KEYS key."

    def handle(self, *args: Any, **options: Any) -> None:
        count = webhook_secrets_reencrypt(actor=None)
        self.stdout.write(f"Encrypted the secrets of {count} webhook endpoint(s) again.")
