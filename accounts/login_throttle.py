"""Login brute-force throttling for the portal's sign-in page and the Django admin's.

Failed sign-ins are counted in Django's cache (Redis shared by every web process when CACHE_URL
is set) under two keys: the username (case-folded, NFKC) and the client address. When a key
reaches its limit within LOGIN_LOCKOUT_SECONDS it is locked for LOGIN_LOCKOUT_SECONDS: every
attempt for it is refused with HTTP 429 and a message saying when to retry, *before* the password
is checked, so a right password during a lockout is refused too. A successful sign-in clears the
username's count. Each lockout is logged (never a password) and written to the audit trail.

The address limit is higher than the username limit on purpose: everyone behind one NAT or
proxy shares an address, and one person's typos must not lock a whole office out.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseBase

from identities.audit import audit_record
from identities.audit.actions import AuditAction

logger = logging.getLogger(__name__)

_KEY_PREFIX = "login-throttle"
AUDIT_ACTION = AuditAction.USER_LOGIN_LOCKED_OUT


@dataclass(frozen=True)
class Lockout:
    """Sign-in is refused for `key_kind` ("username" or "address") until `until`."""

    key_kind: str
    until: datetime

    def seconds_left(self, now: datetime | None = None) -> int:
        left = (self.until - (now or datetime.now(tz=UTC))).total_seconds()
        return max(1, math.ceil(left))

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.seconds_left() / 60))
        whom = "this account" if self.key_kind == "username" else "your network address"
        return (
            f"Too many failed sign-in attempts for {whom}. Sign-in is paused: try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''} (after {self.until:%H:%M} UTC)."
        )


@dataclass(frozen=True)
class _Key:
    kind: str  # "username" or "address"
    ident: str  # a hash of the username, or the address
    limit: int

    @property
    def failures(self) -> str:
        return f"{_KEY_PREFIX}:{self.kind}:{self.ident}:failures"

    @property
    def lock(self) -> str:
        return f"{_KEY_PREFIX}:{self.kind}:{self.ident}:locked"


def normalize_username(username: str) -> str:
    """One counter per person however the name is typed: NFKC, case-folded, trimmed."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


def client_address(request: HttpRequest | None) -> str:
    """The client's address: REMOTE_ADDR, or with NUM_PROXIES trusted proxies in front, the
    address the outermost of them saw (X-Forwarded-For entries before it are client-written)."""
    if request is None:
        return ""
    remote = str(request.META.get("REMOTE_ADDR", ""))
    proxies = settings.NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    hops = [hop.strip() for hop in str(forwarded).split(",") if hop.strip()]
    return hops[-min(proxies, len(hops))] if hops else remote


def _keys(request: HttpRequest | None, username: str) -> list[_Key]:
    keys = []
    name = normalize_username(username)
    if name:
        # Hashed: the cache never holds what was typed (sometimes a password in the wrong box).
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
        keys.append(_Key("username", digest, settings.LOGIN_FAILURE_LIMIT))
    address = client_address(request)
    if address:
        keys.append(_Key("address", address, settings.LOGIN_IP_FAILURE_LIMIT))
    return keys


def lockout_for(request: HttpRequest | None, username: str) -> Lockout | None:
    """The lockout that refuses this attempt, or None. Never looks at the password."""
    now = datetime.now(tz=UTC)
    try:
        for key in _keys(request, username):
            until = cache.get(key.lock)
            if isinstance(until, (int, float)) and until > now.timestamp():
                return Lockout(key.kind, datetime.fromtimestamp(until, tz=UTC))
    except Exception:  # the cache is down: sign-in stays available, loudly
        logger.exception("login throttle: the cache is unreachable; not throttling")
    return None


def record_failure(request: HttpRequest | None, username: str) -> None:
    """Count a failed sign-in under every key; lock the keys that reach their limit."""
    for key in _keys(request, username):
        try:
            locked = _count_failure(key)
        except Exception:
            logger.exception("login throttle: the cache is unreachable; failure not counted")
            return
        if locked is not None:
            _report_lockout(request, username, key, *locked)


def _count_failure(key: _Key) -> tuple[int, datetime] | None:
    """One more failure under `key`; (failures, locked until) if this one locked it."""
    window = settings.LOGIN_LOCKOUT_SECONDS
    cache.add(key.failures, 0, timeout=window)
    try:
        failures = int(cache.incr(key.failures))
    except ValueError:  # expired between add and incr
        cache.set(key.failures, 1, timeout=window)
        failures = 1
    if failures < key.limit:
        return None
    until = datetime.now(tz=UTC) + timedelta(seconds=window)
    # add(): of concurrent failures crossing the limit, one locks and reports the lockout.
    if not cache.add(key.lock, until.timestamp(), timeout=window):
        return None
    cache.delete(key.failures)
    return failures, until


def record_success(request: HttpRequest | None, username: str) -> None:
    """A right password clears the username's count (the address keeps its own)."""
    try:
        for key in _keys(request, username):
            if key.kind == "username":
                cache.delete(key.failures)
    except Exception:
        logger.exception("login throttle: the cache is unreachable; count not cleared")


def _known_username(username: str) -> str | None:
    """The username when such a user exists. What was typed is not logged otherwise: a
    password typed into the username box must not end up in the logs or the audit trail."""
    user_model = get_user_model()
    user = user_model._default_manager.filter(
        **{f"{user_model.USERNAME_FIELD}__iexact": username.strip()}
    ).first()
    return user.get_username() if user is not None else None


def _report_lockout(
    request: HttpRequest | None, username: str, key: _Key, failures: int, until: datetime
) -> None:

    known = _known_username(username)
    address = client_address(request)
    logger.warning(
        "login throttle: %s locked until %s after %d failed sign-ins (user %s, address %s)",
        key.kind,
        until.isoformat(timespec="seconds"),
        failures,
        known or "(unknown)",
        address or "(unknown)",
    )
    audit_record(
        actor=None,
        action=AUDIT_ACTION,
        data={
            "locked": key.kind,
            "username": known,
            "address": address,
            "failures": failures,
            "until": until,
            "path": request.path if request is not None else "",
        },
    )


UNLOCK_AUDIT_ACTION = AuditAction.USER_LOGIN_UNLOCKED


def login_unlock(*, username: str = "", address: str = "", by: str, actor: Any = None) -> list[str]:
    """Lift the lockout (and clear the failure count) of a username and/or an address before
    it ends, e.g. for a user an attacker locked out by guessing at their name. Audited with
    `by`, the operator (and `actor`, their portal account when they have one); returns the
    kinds of key that were locked ("username", "address")."""

    keys = _keys(None, username)  # without a request: the username's key, if one is named
    if address:
        keys.append(_Key("address", address.strip(), settings.LOGIN_IP_FAILURE_LIMIT))
    if not keys:
        raise ValueError("name a username or an address to unlock")
    was_locked = [key.kind for key in keys if cache.get(key.lock) is not None]
    cache.delete_many([name for key in keys for name in (key.lock, key.failures)])
    known = _known_username(username) if username else None
    logger.warning(
        "login throttle: %s unlocked by %s (user %s, address %s)",
        " and ".join(was_locked) or "nothing locked,",
        by,
        known or ("(unknown)" if username else "-"),
        address or "-",
    )
    audit_record(
        actor=actor,
        actor_label=by,
        action=UNLOCK_AUDIT_ACTION,
        data={"username": known, "address": address or None, "was_locked": was_locked},
    )
    return was_locked


class ThrottledLoginFormMixin:
    """For AuthenticationForm subclasses: refuse locked-out attempts before authenticating,
    count wrong passwords, clear the count on success. `lockout` is set when refused."""

    lockout: Lockout | None = None
    request: HttpRequest | None
    cleaned_data: dict[str, Any]
    user_cache: Any

    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        self.lockout = lockout_for(self.request, username)
        if self.lockout is not None:
            logger.info(
                "login throttle: refused a sign-in while the %s is locked", self.lockout.key_kind
            )
            raise ValidationError(self.lockout.message, code="throttled")
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except ValidationError:
            # Only a wrong username or password counts, not e.g. a non-staff user at the admin.
            if self.user_cache is None and self.cleaned_data.get("password"):
                record_failure(self.request, username)
            raise
        if self.user_cache is not None:
            record_success(self.request, username)
        return cleaned


class LoginForm(ThrottledLoginFormMixin, AuthenticationForm):
    """The portal's sign-in form."""


class AdminLoginForm(ThrottledLoginFormMixin, AdminAuthenticationForm):
    """The Django admin's sign-in form (staff only), throttled alike."""


def with_throttle_status(
    view: Callable[..., HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """Wrap a LoginView-like view: a refused attempt answers 429 with Retry-After (the page
    itself, with the message on the form, is what the view rendered)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        context = getattr(response, "context_data", None) or {}
        lockout = getattr(context.get("form"), "lockout", None)
        if isinstance(lockout, Lockout):
            response.status_code = 429
            response["Retry-After"] = str(lockout.seconds_left())
        return response

    return wrapped
