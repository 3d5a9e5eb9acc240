"""`manage.py check --deploy --fail-level WARNING` is clean under production settings (DEBUG
off, a real SECRET_KEY, the production stack's environment), and fails the moment one of the
protections it checks is switched off, so a clean run means something."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.support.services import run_manage

pytestmark = pytest.mark.security

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "portal.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://portal.example.com",
    "TRUST_X_FORWARDED_PROTO": "1",
    "CACHE_URL": "redis://127.0.0.1:6379/1",
    "LOG_FORMAT": "json",
    "AZURE_MODE": "azure",
}
CHECK = ("check", "--deploy", "--fail-level", "WARNING")

# Each weakening and the check (Django's security.W0xx) that must then fail the run.
WEAKENED = {
    "debug on": ({"DEBUG": "1"}, "security.W018"),
    "weak secret key": ({"SECRET_KEY": "changeme"}, "security.W009"),
    "no https redirect": ({"SECURE_SSL_REDIRECT": "0"}, "security.W008"),
    "no hsts": ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
}


def check_deploy(env: dict[str, str]) -> Any:
    return run_manage(*CHECK, **env)


def test_production_settings_pass_check_deploy_with_no_warnings() -> None:
    result = check_deploy(PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_when_a_protection_is_switched_off() -> None:
    names = list(WEAKENED)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda name: check_deploy({**PRODUCTION, **WEAKENED[name][0]}), names)
        )

    for name, result in zip(names, results, strict=True):
        check_id = WEAKENED[name][1]
        assert result.returncode != 0, f"{name}: check --deploy passed"
        assert check_id in result.stderr + result.stdout, f"{name}: {result.stderr[-500:]}"
