"""`manage.py login_unlock` runs in a process of its own: it must reach the lockouts the web
processes keep, in the default set-up too (no CACHE_URL), or refuse and say why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings

from tests.support.people import PASSWORD
from tests.support.services import database_url_for_children, postgres_or_missing, run_manage

pytestmark = [pytest.mark.security, pytest.mark.django_db(transaction=True)]

LIMITS = {"LOGIN_FAILURE_LIMIT": 3, "LOGIN_IP_FAILURE_LIMIT": 12, "LOGIN_LOCKOUT_SECONDS": 900}


def sign_in(password: str) -> int:
    response = Client().post(
        "/accounts/login/", {"username": "alice", "password": password}, REMOTE_ADDR="10.0.0.5"
    )
    return response.status_code


def default_caches(var_dir: Path) -> dict[str, Any]:
    """CACHES as a portal process with no cache configuration computes them."""
    code = "import json; from django.conf import settings as s; print(json.dumps(s.CACHES))"
    result = run_manage("shell", "-v", "0", "-c", code, DEBUG="1", PORTAL_VAR_DIR=str(var_dir))
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_login_unlock_from_another_process_lifts_a_lockout_of_the_default_setup(
    requester: Any, tmp_path: Path
) -> None:
    postgres_or_missing()  # the command's process writes its audit row to the test database
    caches = default_caches(tmp_path)
    with override_settings(CACHES=caches, **LIMITS):
        for _ in range(3):
            assert sign_in("wrong-" + PASSWORD) == 200
        assert sign_in(PASSWORD) == 429  # this (web) process holds the lockout

        result = run_manage(
            "login_unlock",
            "--username",
            "alice",
            DEBUG="1",
            PORTAL_VAR_DIR=str(tmp_path),
            DATABASE_URL=database_url_for_children(),
        )

        assert result.returncode == 0, result.stderr
        assert "Unlocked: username" in result.stdout, result.stdout
        assert sign_in(PASSWORD) == 302


def test_login_unlock_refuses_when_the_cache_is_private_to_each_process() -> None:
    private = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with (
        override_settings(CACHES=private),
        pytest.raises(CommandError, match="cache of its own"),
    ):
        call_command("login_unlock", "--username", "alice")
