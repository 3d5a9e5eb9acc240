"""Secrets the portal must read back (webhook signing secrets: it signs with them) are encrypted
at rest with Fernet (AES-128-CBC + HMAC-SHA256, cryptography's `MultiFernet`), keyed by
FIELD_ENCRYPTION_KEYS: the first key encrypts, every key decrypts, so a key is rotated by putting
a new one first, running `manage.py reencrypt_secrets`, then dropping the old one.

Secrets the portal only compares (API tokens) are hashed instead, never stored reversibly.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class FieldDecryptionError(Exception):
    """A stored value does not decrypt with any of FIELD_ENCRYPTION_KEYS."""


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key) for key in settings.FIELD_ENCRYPTION_KEYS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise FieldDecryptionError(
            "A stored secret does not decrypt with any key in FIELD_ENCRYPTION_KEYS (was the key "
            "that encrypted it removed before `manage.py reencrypt_secrets` ran?)."
        ) from exc


def is_encrypted(value: str) -> bool:
    """`value` is a token one of the current keys made (the data migration's idempotence)."""
    try:
        decrypt(value)
    except FieldDecryptionError:
        return False
    return True


class EncryptedTextField(models.TextField):
    """A text column holding a Fernet token; Python code sees the plaintext. "" stays "" (an
    absent secret). Not searchable: every encryption of one value differs."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(str(value))
