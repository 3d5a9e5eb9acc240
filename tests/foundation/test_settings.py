"""Settings errors are clear: no SECRET_KEY with DEBUG off, a malformed boolean. (That production
settings pass `check --deploy` is in tests/security/test_production_settings.py.)"""

from __future__ import annotations

from tests.support.services import run_manage


def test_missing_secret_key_with_debug_off_is_a_clear_error() -> None:
    result = run_manage("check", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_invalid_boolean_names_the_variable() -> None:
    result = run_manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr
