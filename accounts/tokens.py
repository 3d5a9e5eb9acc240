"""API tokens for pipelines: minted, checked and revoked here and nowhere else.

Format: `wip_` + 36 random base62 characters + a 6-character base62 CRC32 of those 36, e.g.
`wip_3xT9…Qa01Zk`. The prefix lets secret scanners (and `portal.logging`, which redacts
`wip_[A-Za-z0-9_-]{8,}`) recognise a leaked token; the checksum lets them, and us, reject a
mistyped or made-up token without touching the database. Only the SHA-256 of the token is stored:
it is 214 bits of randomness, so a fast hash is enough (no password-style stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ApiToken
from identities import roles
from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.errors import (
    InputInvalidError,
    NotFoundError,
    PermissionDeniedError,
)
from identities.policy import PolicyResult, Violation

if TYPE_CHECKING:
    from django.contrib.auth.models import User

TOKEN_PREFIX = "wip_"  # noqa: S105 - the public prefix, not a secret
SCOPE_READ = "read"
SCOPE_REQUEST = "request"
SCOPE_APPROVE = "approve"
SCOPES = ApiToken.SCOPES
# What a team's service principal may be granted (trust rules, service tokens), in SCOPES'
# order: approving stays with people, whose four eyes a pipeline must not stand in for.
SERVICE_SCOPES = (SCOPE_READ, SCOPE_REQUEST)
_ALPHABET = string.digits + string.ascii_letters  # base62: no '-' or '_', one double-click
_RANDOM_LENGTH = 36  # 36 * log2(62) ≈ 214 bits
_CHECKSUM_LENGTH = 6  # 62**6 > 2**32
TOKEN_LENGTH = len(TOKEN_PREFIX) + _RANDOM_LENGTH + _CHECKSUM_LENGTH
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8  # shown in lists; identifies, does not authenticate
NAME_MAX = 100
# last_used_at is bookkeeping: write it at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenInvalidError(Exception):
    """The presented token is malformed, unknown, expired or revoked; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(_ALPHABET[remainder])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_LENGTH)


def token_generate() -> str:
    """A new random token in the portal's format (not stored anywhere)."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    return f"{TOKEN_PREFIX}{body}{_checksum(body)}"


def token_well_formed(raw: str) -> bool:
    """Prefix, length, alphabet and checksum are right (says nothing about validity)."""
    if len(raw) != TOKEN_LENGTH or not raw.startswith(TOKEN_PREFIX):
        return False
    body = raw[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + _RANDOM_LENGTH]
    checksum = raw[len(TOKEN_PREFIX) + _RANDOM_LENGTH :]
    if any(char not in _ALPHABET for char in body):
        return False
    return hmac.compare_digest(checksum, _checksum(body))


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("ascii")).hexdigest()


def _scope_problems(user: User, scopes: list[str]) -> list[Violation]:
    problems = []
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes:
        problems.append(Violation("scopes", "required", "Choose at least one scope."))
    if unknown:
        problems.append(
            Violation(
                "scopes",
                "unknown_scope",
                f"Unknown scope(s) {', '.join(unknown)}; scopes are {', '.join(SCOPES)}.",
            )
        )
    # A scope the user could never exercise is refused now rather than failing later.
    if SCOPE_REQUEST in scopes and not roles.is_requester(user):
        problems.append(
            Violation(
                "scopes",
                "scope_not_allowed",
                f"{user.get_username()} is not a requester; the 'request' scope would be useless.",
            )
        )
    if SCOPE_APPROVE in scopes and not roles.is_approver(user):
        problems.append(
            Violation(
                "scopes",
                "scope_not_allowed",
                f"{user.get_username()} is not an approver; the 'approve' scope would be useless.",
            )
        )
    return problems


@transaction.atomic
def api_token_create(
    *, user: User, name: str, scopes: list[str], expires_at: datetime | None
) -> tuple[ApiToken, str]:
    """Mint a token for `user`; returns the row and the plaintext, which is never stored and
    cannot be shown again. Audited (without the secret)."""
    scopes = list(dict.fromkeys(scope.strip().lower() for scope in scopes))
    problems = _scope_problems(user, scopes)
    name = name.strip()
    if not name:
        problems.append(Violation("name", "required", "Name the token (what uses it)."))
    elif len(name) > NAME_MAX:
        problems.append(Violation("name", "too_long", f"At most {NAME_MAX} characters."))
    if expires_at is not None and expires_at <= timezone.now():
        problems.append(Violation("expires_at", "in_the_past", "The expiry must be in the future."))
    if problems:
        raise InputInvalidError(PolicyResult(violations=problems))
    raw = token_generate()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=raw[:PREFIX_LENGTH],
        hashed_secret=token_hash(raw),
        scopes=[scope for scope in SCOPES if scope in scopes],
        expires_at=expires_at,
    )
    audit_record(actor=user, action=AuditAction.API_TOKEN_CREATED, data=_describe(token))
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: User) -> ApiToken:
    """Revoke `token` for good (its owner or an admin may). Idempotent: revoking a revoked
    token changes nothing and writes no second audit row."""
    if actor.pk != token.user_id and not roles.is_admin(actor):
        raise PermissionDeniedError("Only the token's owner or an admin can revoke it.")
    now = timezone.now()
    # Compare-and-set, so two concurrent revocations record one revocation.
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=now, revoked_by=actor
    )
    if updated != 1:
        token.refresh_from_db()
        return token
    token.revoked_at, token.revoked_by = now, actor
    audit_record(actor=actor, action=AuditAction.API_TOKEN_REVOKED, data=_describe(token))
    return token


def api_tokens_of(user: User) -> QuerySet[ApiToken]:
    """`user`'s own tokens, newest first (revoked and expired ones included)."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def api_token_get(*, user: User, pk: int) -> ApiToken:
    """One of `user`'s tokens, or NotFoundError (someone else's token is not found either)."""
    token = api_tokens_of(user).filter(pk=pk).first()
    if token is None:
        raise NotFoundError(f"API token {pk} was not found.")
    return token


def api_token_authenticate(raw: str) -> ApiToken:
    """The active token `raw` is, with its user loaded, or TokenInvalidError saying why.

    The lookup is by the non-secret prefix; the hash is then compared in constant time, so
    response timing tells nothing about how much of a guessed secret was right.
    """
    if not token_well_formed(raw):
        raise TokenInvalidError("The token is malformed.")
    digest = token_hash(raw)
    candidates = ApiToken.objects.select_related("user").filter(prefix=raw[:PREFIX_LENGTH])
    token = next(
        (c for c in candidates if hmac.compare_digest(c.hashed_secret, digest)),
        None,
    )
    if token is None:
        raise TokenInvalidError("The token is not known.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenInvalidError("The token was revoked.")
    if token.is_expired(now):
        raise TokenInvalidError("The token has expired.")
    if not token.user.is_active:
        raise TokenInvalidError("The token's user is inactive.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # Bookkeeping only (not audited): one conditional UPDATE a minute per token at most.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def _describe(token: ApiToken) -> dict[str, Any]:
    """What the audit trail records about a token: never the secret or its hash."""
    return {
        "token_id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "user": token.user.get_username(),
        "user_id": token.user_id,
        "scopes": list(token.scopes),
        "expires_at": token.expires_at,
    }


def parse_duration(text: str) -> timedelta | None:
    """`30d`, `12h`, `90m`, `2w` → timedelta; `never` → None (no expiry). ValueError otherwise."""
    text = text.strip().lower()
    if text == "never":
        return None
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m, 2w or 'never'.")
    return timedelta(**{units[unit]: int(number)})
