"""Login brute force is throttled (accounts.login_throttle) on the portal's sign-in page and the
Django admin's: after LOGIN_FAILURE_LIMIT failures for a username, or LOGIN_IP_FAILURE_LIMIT
from an address, further attempts are refused with 429 and a message saying when to retry,
without the password being checked; a success clears the username's count."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse

from accounts.login_throttle import AUDIT_ACTION
from identities.models import AuditEvent
from tests.support.people import PASSWORD
from tests.support.services import free_port, redis_url_or_missing, run_manage

pytestmark = [pytest.mark.security, pytest.mark.django_db]

LIMIT = 5
IP_LIMIT = 20
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
WRONG = "not-the-" + PASSWORD


@pytest.fixture(autouse=True)
def limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Known limits, and a fast password hasher: every attempt here really checks a password,
    and PBKDF2's deliberate cost would make this file take minutes."""
    from django.contrib.auth.hashers import make_password

    from tests.support import people

    with override_settings(
        LOGIN_FAILURE_LIMIT=LIMIT,
        LOGIN_IP_FAILURE_LIMIT=IP_LIMIT,
        LOGIN_LOCKOUT_SECONDS=900,
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    ):
        monkeypatch.setattr(people, "_password_hash", lambda: make_password(PASSWORD))
        yield


def sign_in(
    username: str, password: str, *, path: str = LOGIN, address: str = "10.0.0.1", **extra: Any
) -> Any:
    return Client().post(
        path, {"username": username, "password": password}, REMOTE_ADDR=address, **extra
    )


def signed_in(response: Any) -> bool:
    return "_auth_user_id" in response.wsgi_request.session


def fail(times: int, username: str = "alice", **kwargs: Any) -> None:
    for _ in range(times):
        response = sign_in(username, WRONG, **kwargs)
        assert response.status_code == 200, "refused before the limit"
        assert not signed_in(response)


def test_a_right_password_is_refused_once_the_username_is_locked(requester: Any) -> None:
    fail(LIMIT)

    checked = AssertionError("the password was checked during a lockout")
    with mock.patch.object(ModelBackend, "authenticate", side_effect=checked) as authenticate:
        response = sign_in("alice", PASSWORD)

    assert response.status_code == 429
    assert not signed_in(response)
    authenticate.assert_not_called()  # the password was not even checked
    assert 800 < int(response["Retry-After"]) <= 900
    [error] = response.context["form"].non_field_errors()
    assert error.startswith("Too many failed sign-in attempts for this account.")
    assert "try again in 15 minutes (after " in error
    html = response.content.decode()
    assert 'role="alert"' in html and "try again in 15 minutes" in html


def test_below_the_limit_the_right_password_still_works(requester: Any) -> None:
    fail(LIMIT - 1)

    response = sign_in("alice", PASSWORD)

    assert response.status_code == 302
    assert signed_in(response)


def test_the_username_is_normalized_so_case_and_spaces_do_not_buy_attempts(
    requester: Any,
) -> None:
    fullwidth = "\uff41\uff4c\uff49\uff43\uff45"  # "alice" in fullwidth letters (NFKC: alice)
    for username in ("alice", "ALICE", " Alice ", "aLiCe", fullwidth):
        sign_in(username, WRONG)

    assert sign_in("alice", PASSWORD).status_code == 429


def test_the_lock_is_per_username(requester: Any, outsider: Any) -> None:
    fail(LIMIT, "alice", address="10.0.0.1")

    assert sign_in("bob", PASSWORD, address="10.0.0.1").status_code == 302
    assert sign_in("alice", PASSWORD, address="10.9.9.9").status_code == 429


def test_a_success_clears_the_usernames_count(requester: Any) -> None:
    fail(LIMIT - 1)
    assert sign_in("alice", PASSWORD).status_code == 302

    fail(LIMIT - 1)
    assert sign_in("alice", PASSWORD).status_code == 302


def test_a_submission_without_a_password_does_not_clear_the_count(requester: Any) -> None:
    fail(LIMIT - 1)
    assert sign_in("alice", "").status_code == 200  # "this field is required"

    assert sign_in("alice", WRONG).status_code == 200
    assert sign_in("alice", PASSWORD).status_code == 429


def test_many_usernames_from_one_address_lock_the_address(requester: Any) -> None:
    for number in range(IP_LIMIT):
        sign_in(f"guess{number}", WRONG, address="10.6.6.6")

    refused = sign_in("alice", PASSWORD, address="10.6.6.6")
    assert refused.status_code == 429
    assert "your network address" in refused.content.decode()
    assert sign_in("alice", PASSWORD, address="10.7.7.7").status_code == 302


def test_a_forged_forwarded_for_header_does_not_buy_attempts(requester: Any) -> None:
    """With no trusted proxy (NUM_PROXIES=0), X-Forwarded-For is the client's own words."""
    for number in range(IP_LIMIT):
        sign_in(f"guess{number}", WRONG, HTTP_X_FORWARDED_FOR=f"192.0.2.{number}")

    assert sign_in("alice", PASSWORD).status_code == 429


@override_settings(NUM_PROXIES=1)
def test_behind_a_trusted_proxy_the_address_it_saw_is_the_key(requester: Any) -> None:
    proxy = "10.0.0.2"
    for number in range(IP_LIMIT):
        sign_in(
            f"guess{number}",
            WRONG,
            address=proxy,
            HTTP_X_FORWARDED_FOR=f"forged-{number}, 198.51.100.7",
        )

    from_attacker = sign_in("alice", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="198.51.100.7")
    from_colleague = sign_in("alice", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="198.51.100.8")
    assert from_attacker.status_code == 429
    assert from_colleague.status_code == 302


@override_settings(LOGIN_LOCKOUT_SECONDS=1)
def test_the_lock_ends_after_the_lockout(requester: Any) -> None:
    fail(LIMIT)
    assert sign_in("alice", PASSWORD).status_code == 429

    time.sleep(1.2)

    assert sign_in("alice", PASSWORD).status_code == 302


def test_the_admin_sign_in_is_throttled_too_and_shares_the_count(admin_user: Any) -> None:
    fail(LIMIT - 1, "admin", path=ADMIN_LOGIN)
    fail(1, "admin", path=LOGIN)

    refused = sign_in("admin", PASSWORD, path=ADMIN_LOGIN)

    assert refused.status_code == 429
    assert "Too many failed sign-in attempts" in refused.content.decode()
    assert not signed_in(refused)
    assert reverse("admin:login") == ADMIN_LOGIN


def test_a_non_staff_user_at_the_admin_does_not_count_as_a_failure(requester: Any) -> None:
    for _ in range(LIMIT + 1):
        response = sign_in("alice", PASSWORD, path=ADMIN_LOGIN)
        assert response.status_code == 200  # "not a staff account", not a lockout

    assert sign_in("alice", PASSWORD).status_code == 302


def test_a_lockout_is_audited_and_logged_without_the_password(
    requester: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="accounts.login_throttle"):
        fail(LIMIT)
        sign_in("alice", PASSWORD)
        for number in range(LIMIT):
            sign_in("Tr0ub4dor&3-typed-as-username", WRONG, address=f"10.1.1.{number}")

    events = list(AuditEvent.objects.filter(action=AUDIT_ACTION).order_by("id"))
    assert [(event.data["locked"], event.data["username"]) for event in events] == [
        ("username", "alice"),
        ("username", None),  # not a user: what was typed is not recorded
    ]
    assert events[0].data["failures"] == LIMIT
    assert events[0].data["address"] == "10.0.0.1"
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "accounts.login_throttle" and r.levelname == "WARNING"
    ]
    assert len(warnings) == 2
    assert "username locked until" in warnings[0] and "user alice" in warnings[0]
    recorded = caplog.text + "".join(str(event.data) for event in events)
    for secret in (PASSWORD, WRONG, "Tr0ub4dor"):
        assert secret not in recorded


def test_the_counters_work_on_the_shared_redis_cache(requester: Any) -> None:
    """Production shares the counters between web processes through Redis (CACHE_URL)."""
    redis_url = redis_url_or_missing()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    redis_cache = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": prefix,
        }
    }
    with override_settings(CACHES=redis_cache):
        try:
            fail(LIMIT - 1)
            assert sign_in("alice", PASSWORD).status_code == 302
            fail(LIMIT)
            assert sign_in("alice", PASSWORD).status_code == 429
        finally:
            import redis

            client = redis.Redis.from_url(redis_url)
            stale = list(client.scan_iter(f"{prefix}:*"))
            if stale:
                client.delete(*stale)
            cache.close()


def test_sign_in_stays_available_when_the_cache_is_down(requester: Any) -> None:
    down = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    with override_settings(CACHES=down):
        assert sign_in("alice", WRONG).status_code == 200
        assert sign_in("alice", PASSWORD).status_code == 302


def settings_under(**env: str) -> Any:
    code = (
        "from django.conf import settings as s; "
        "print(s.LOGIN_FAILURE_LIMIT, s.LOGIN_IP_FAILURE_LIMIT, s.LOGIN_LOCKOUT_SECONDS)"
    )
    return run_manage("shell", "-v", "0", "-c", code, DEBUG="1", **env)


def test_the_limits_come_from_the_environment() -> None:
    configured = settings_under(LOGIN_FAILURE_LIMIT="3", LOGIN_LOCKOUT_SECONDS="60")
    default = settings_under()
    invalid = settings_under(LOGIN_FAILURE_LIMIT="0")

    assert configured.stdout.split() == ["3", "12", "60"], configured.stderr
    assert default.stdout.split() == ["5", "20", "900"], default.stderr
    assert invalid.returncode != 0
    assert "LOGIN_FAILURE_LIMIT must be at least 1" in invalid.stderr


def test_an_operator_lifts_a_lockout_and_it_is_audited(requester: Any) -> None:
    """An attacker guessing at alice's name locks her out; an operator lets her back in."""
    from django.core.management import call_command

    from accounts.login_throttle import UNLOCK_AUDIT_ACTION

    fail(LIMIT, address="203.0.113.9")
    assert sign_in("alice", PASSWORD).status_code == 429

    call_command("login_unlock", "--username", "ALICE")  # as typed: the count is case-folded

    assert signed_in(sign_in("alice", PASSWORD))
    event = AuditEvent.objects.filter(action=UNLOCK_AUDIT_ACTION).get()
    assert event.data == {"username": "alice", "address": None, "was_locked": ["username"]}
    assert event.actor is None and "manage.py login_unlock" in event.actor_label


def test_unlocking_an_address_leaves_the_usernames_locked(requester: Any, approver: Any) -> None:
    from django.core.management import call_command

    office = "198.51.100.7"
    for n in range(IP_LIMIT):  # many names from one address: only the address locks
        sign_in(f"nobody-{n}", WRONG, address=office)
    fail(LIMIT, username="alice", address="192.0.2.1")
    assert sign_in(approver.username, PASSWORD, address=office).status_code == 429

    call_command("login_unlock", "--address", office)

    assert signed_in(sign_in(approver.username, PASSWORD, address=office))
    assert sign_in("alice", PASSWORD, address=office).status_code == 429


def test_unlock_needs_a_username_or_an_address() -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--username or an --address"):
        call_command("login_unlock")


USER_LIST = "/admin/auth/user/"


def lift_from_the_user_list(client: Client, *users: Any) -> Any:
    return client.post(
        USER_LIST,
        {"action": "lift_sign_in_lockout", "_selected_action": [user.pk for user in users]},
        follow=True,
    )


def test_an_admin_sees_a_lockout_on_the_user_list_and_lifts_it(
    requester: Any, approver: Any, admin_user: Any
) -> None:
    from accounts.login_throttle import UNLOCK_AUDIT_ACTION

    fail(LIMIT, address="203.0.113.9")
    client = Client()
    client.force_login(admin_user)
    listed = client.get(USER_LIST).content.decode()
    assert listed.count("locked until") == 1  # alice's row only

    done = lift_from_the_user_list(client, requester, approver)

    assert "Sign-in lockout lifted for alice." in done.content.decode()
    assert signed_in(sign_in("alice", PASSWORD))
    events = AuditEvent.objects.filter(action=UNLOCK_AUDIT_ACTION).order_by("id")
    assert [(e.actor, e.data["username"], e.data["was_locked"]) for e in events] == [
        (admin_user, "alice", ["username"]),
        (admin_user, approver.username, []),
    ]
    assert "locked until" not in client.get(USER_LIST).content.decode()


def test_staff_who_may_only_view_users_cannot_lift_a_lockout(requester: Any) -> None:
    from django.contrib.auth.models import Permission

    from accounts.login_throttle import UNLOCK_AUDIT_ACTION
    from tests.support.people import UserFactory

    viewer = UserFactory(username="vic", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_user"))
    fail(LIMIT)
    client = Client()
    client.force_login(viewer)
    assert "locked until" in client.get(USER_LIST).content.decode()
    assert "lift_sign_in_lockout" not in client.get(USER_LIST).content.decode()

    lift_from_the_user_list(client, requester)

    assert sign_in("alice", PASSWORD).status_code == 429
    assert not AuditEvent.objects.filter(action=UNLOCK_AUDIT_ACTION).exists()


def test_lifting_a_lockout_from_the_user_list_needs_the_csrf_token(
    requester: Any, admin_user: Any
) -> None:
    fail(LIMIT)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    refused = lift_from_the_user_list(client, requester)

    assert refused.status_code == 403
    assert sign_in("alice", PASSWORD).status_code == 429
