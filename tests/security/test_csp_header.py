"""The Content-Security-Policy header: strict, nonce-based, in production settings too."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet
from django.test import Client

from tests.support.services import run_manage

KEY = Fernet.generate_key().decode()

pytestmark = [pytest.mark.security, pytest.mark.django_db]


def test_pages_carry_a_strict_nonce_based_policy_and_the_script_its_nonce(client: Client) -> None:
    response = client.get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    nonce = re.search(r"'nonce-([^']+)'", directives["script-src"])
    assert nonce is not None, policy
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert f'nonce="{nonce.group(1)}"' in response.content.decode()
    assert client.get("/accounts/login/")["Content-Security-Policy"] != policy  # fresh nonce


def test_production_settings_send_the_policy_too() -> None:
    code = (
        "from django.conf import settings as s; "
        "print('csp.middleware.CSPMiddleware' in s.MIDDLEWARE, "
        "s.CONTENT_SECURITY_POLICY['DIRECTIVES']['frame-ancestors'])"
    )
    result = run_manage(
        "shell", "-v", "0", "-c", code, SECRET_KEY="x" * 60, DEBUG="0", FIELD_ENCRYPTION_KEYS=KEY
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "[\"'none'\"]"], result.stdout
