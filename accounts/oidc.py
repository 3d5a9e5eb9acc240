"""A CI system's own OIDC token as the API credential: validated here and nowhere else.

A pipeline sends `Authorization: Bearer <JWT>` (GitHub Actions, Azure DevOps, GitLab mint one
per job). The token is accepted when

- its `iss` equals, byte for byte, the issuer of an enabled trust rule;
- its signature verifies with a key of that issuer's JWKS, found through the issuer's OIDC
  discovery document (`{iss}/.well-known/openid-configuration` → `jwks_uri`), fetched over
  https only (plain http only to a loopback host when OIDC_ALLOW_HTTP_LOOPBACK, for tests and
  DEBUG) through the SSRF guard (identities.outbound, the webhooks' own): the issuer, every
  redirect hop (at most 3) and the `jwks_uri` must resolve to public addresses (loopback,
  link-local with the metadata service 169.254.169.254, private, multicast, reserved, and their
  IPv6 forms are refused) unless OIDC_ALLOWED_HOSTS / OIDC_ALLOWED_CIDRS admit them; the
  address connected to is checked again (DNS rebinding); each fetch is capped at 256 KiB and
  OIDC_HTTP_TIMEOUT_SECONDS in all; the key set is cached for OIDC_JWKS_TTL_SECONDS and
  fetched again, at most once per OIDC_JWKS_REFETCH_SECONDS per issuer, when a token names a
  `kid` the cache lacks (rotation);
- its algorithm is one of ALLOWED_ALGORITHMS (never `none`, never HMAC: an HMAC "signed" with
  the issuer's public key would otherwise verify), and the key's type fits it;
- `exp`, `iat` (required) and `nbf` (when present) hold with OIDC_LEEWAY_SECONDS of leeway;
- its audience, subject and claims match one enabled rule (or several of one service
  principal, whose scopes then add up; rules of two principals matching is refused as
  ambiguous);
- it was not presented before: each token is good for one API call. The `jti` is remembered
  in the cache until the token expires; a token without `jti` is remembered by its SHA-256
  instead, so the same bytes cannot be replayed either (pipelines ask their CI for a fresh
  token per call, which GitHub, Azure DevOps and GitLab all allow).

Every refusal is a 401. The first OIDC_REFUSAL_AUDIT_LIMIT refusals per client address in
each OIDC_REFUSAL_AUDIT_WINDOW_SECONDS are also an `oidc_token.refused` audit row naming the
reason, the address and the claims the token asserted (unverified, for the investigation; never
the token itself); past that they are logged and counted only
(`portal_oidc_tokens_refused_total`), so that nobody without an account can grow the audit
trail, or hold its append lock, at will.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import jwt
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter

from accounts.models import ServicePrincipal, TrustRule
from accounts.tokens import SERVICE_SCOPES, TOKEN_PREFIX
from identities import outbound
from identities.audit import audit_record
from identities.audit.actions import AuditAction

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
_KEY_TYPE_OF = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
# Claims a rule cannot pin in `claims`: checked by the validation itself or by `subject`.
RESERVED_CLAIMS = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti", "sub"})
REFUSED_LABEL = "unauthenticated"
_MAX_DOCUMENT_BYTES = 256 * 1024
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "workload-identity-portal-oidc"
_CLAIM_RECORD_MAX = 300
_LOOPBACK_NAMES = frozenset({"localhost"})
# The last_used_at bookkeeping of a rule is written at most this often.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
# Every label value is one of the refusal codes above (a closed set written in this module).
TOKENS_REFUSED = Counter(
    "portal_oidc_tokens_refused",
    "OIDC bearer tokens refused, by reason, and whether the refusal was audited (false: its "
    "client address had used up OIDC_REFUSAL_AUDIT_LIMIT for the window).",
    ["reason", "audited"],
)


class OidcTokenRefusedError(Exception):
    """The token is refused; `reason` is what the caller is told, `code` what the audit
    trail files it under."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class OidcGrant:
    """What an accepted token may do: act as `principal` with `scopes` (request.auth)."""

    principal: ServicePrincipal
    rules: tuple[TrustRule, ...]
    scopes: tuple[str, ...]
    issuer: str
    subject: str


def looks_like_jwt(raw: str) -> bool:
    """Three base64url segments, and not a portal token (those are `wip_…`)."""
    return not raw.startswith(TOKEN_PREFIX) and raw.count(".") == 2 and " " not in raw


def issuer_url_problem(url: str) -> str | None:
    """Why the portal will not fetch keys from `url`, or None: https only; plain http only to
    a loopback host, and only when OIDC_ALLOW_HTTP_LOOPBACK is on (tests, DEBUG)."""
    if url != url.strip() or any(ch.isspace() for ch in url):
        return "must not contain whitespace"
    try:
        parts = urlsplit(url)
        _ = parts.port  # parsed here for its ValueError (out of range, not a number)
    except ValueError:
        # A bracketed host that is no IP address (https://[zz]/), a port out of range, ...
        return "is not a valid URL"
    if not parts.hostname:
        return "must be an absolute https:// URL"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    if parts.scheme == "https":
        return None
    loopback_allowed = settings.OIDC_ALLOW_HTTP_LOOPBACK and _is_loopback(parts.hostname)
    if parts.scheme == "http" and loopback_allowed:
        return None
    return "must be an https:// URL"


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def subject_pattern_matches(pattern: str, subject: str) -> bool:
    """`*` matches any run of characters (including none); every other character is literal."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, subject, flags=re.DOTALL) is not None


def rule_matches(rule: TrustRule, claims: dict[str, Any]) -> bool:
    """The verified `claims` satisfy the rule's audience, subject and exact claims."""
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
    if rule.audience not in audiences:
        return False
    subject = claims.get("sub")
    if not isinstance(subject, str):
        return False
    if rule.subject and subject != rule.subject:
        return False
    if rule.subject_pattern and not subject_pattern_matches(rule.subject_pattern, subject):
        return False
    # Exact string comparison: a claim the token lacks, or carries as a non-string, fails.
    return all(claims.get(name) == value for name, value in rule.claims.items())


def oidc_authenticate(raw: str, *, client_address: str = "") -> OidcGrant:
    """The grant an OIDC token `raw` earns, or OidcTokenRefusedError saying why (audited, up
    to OIDC_REFUSAL_AUDIT_LIMIT refusals per `client_address` and window)."""
    asserted: dict[str, Any] = {}
    try:
        return _validate(raw, asserted)
    except OidcTokenRefusedError as exc:
        _record_refusal(exc, asserted, client_address)
        raise


def _validate(raw: str, asserted: dict[str, Any]) -> OidcGrant:
    try:
        header = jwt.get_unverified_header(raw)
        unverified = jwt.decode(raw, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise OidcTokenRefusedError("malformed", "The token is not a well-formed JWT.") from exc
    algorithm, kid = header.get("alg"), header.get("kid")
    issuer = unverified.get("iss")
    asserted.update(
        alg=algorithm,
        kid=kid,
        iss=issuer,
        sub=unverified.get("sub"),
        aud=unverified.get("aud"),
        jti=unverified.get("jti"),
    )
    if algorithm not in ALLOWED_ALGORITHMS:
        raise OidcTokenRefusedError(
            "algorithm_not_allowed",
            f"The token's algorithm {algorithm!r} is not allowed; "
            f"allowed: {', '.join(ALLOWED_ALGORITHMS)}.",
        )
    rules = list(
        TrustRule.objects.select_related(
            "service_principal", "service_principal__team", "service_principal__user"
        ).filter(issuer=issuer, disabled_at__isnull=True)
        if isinstance(issuer, str)
        else []
    )
    if not rules:
        raise OidcTokenRefusedError(
            "unknown_issuer", "No trust rule accepts tokens of this token's issuer."
        )
    assert isinstance(issuer, str)  # noqa: S101 - rules exist only for string issuers
    key = _signing_key(issuer, kid, algorithm)
    claims = _verified_claims(raw, key, algorithm, issuer, sorted({r.audience for r in rules}))
    matching = [rule for rule in rules if rule_matches(rule, claims)]
    if not matching:
        raise OidcTokenRefusedError(
            "no_matching_rule",
            "The token's subject and claims match no trust rule for its issuer and audience.",
        )
    principals = {rule.service_principal_id for rule in matching}
    if len(principals) > 1:
        raise OidcTokenRefusedError(
            "ambiguous",
            "The token matches trust rules of more than one service principal; "
            "make the rules narrower.",
        )
    principal = matching[0].service_principal
    if not principal.user.is_active:
        raise OidcTokenRefusedError(
            "principal_disabled", f"The service principal {principal.label} is disabled."
        )
    _refuse_replay(raw, issuer, claims)
    _touch(matching)
    # Not audited (the actions it takes are, as the principal): logged, so support can tie a
    # call to the pipeline run (sub, jti) behind it.
    logger.info(
        "OIDC token accepted as %s (rules %s, sub %r, jti %r)",
        principal.label,
        ",".join(str(rule.pk) for rule in matching),
        claims.get("sub"),
        claims.get("jti"),
    )
    granted = {scope for rule in matching for scope in rule.scopes}
    return OidcGrant(
        principal=principal,
        rules=tuple(matching),
        scopes=tuple(scope for scope in SERVICE_SCOPES if scope in granted),
        issuer=issuer,
        subject=str(claims["sub"]),
    )


def _verified_claims(
    raw: str, key: Any, algorithm: str, issuer: str, audiences: list[str]
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            raw,
            key=key,
            algorithms=[algorithm],
            audience=audiences,
            issuer=issuer,
            leeway=settings.OIDC_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub"], "strict_aud": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise OidcTokenRefusedError(
            "bad_signature", "The token's signature does not verify."
        ) from exc
    except jwt.ExpiredSignatureError as exc:
        raise OidcTokenRefusedError("expired", "The token has expired.") from exc
    except jwt.ImmatureSignatureError as exc:
        raise OidcTokenRefusedError(
            "not_yet_valid", "The token is not valid yet (nbf or iat in the future)."
        ) from exc
    except jwt.InvalidAudienceError as exc:
        raise OidcTokenRefusedError(
            "wrong_audience", "The token's audience matches no trust rule for its issuer."
        ) from exc
    except jwt.InvalidTokenError as exc:
        raise OidcTokenRefusedError("invalid", f"The token is invalid: {exc}.") from exc
    return claims


def _refuse_replay(raw: str, issuer: str, claims: dict[str, Any]) -> None:
    jti = claims.get("jti")
    seen = str(jti) if isinstance(jti, str) and jti else "sha256:" + _sha256(raw)
    key = f"oidc:seen:{_sha256(issuer)}:{_sha256(seen)}"
    # Remembered until the token itself expires (plus the leeway it was granted).
    lifetime = int(claims["exp"]) - int(time.time()) + settings.OIDC_LEEWAY_SECONDS
    if not cache.add(key, 1, timeout=max(lifetime, 1)):
        raise OidcTokenRefusedError(
            "replayed", "The token was used before; ask the CI system for a fresh one per call."
        )


def _touch(rules: list[TrustRule]) -> None:
    now = timezone.now()
    stale = [
        rule.pk
        for rule in rules
        if rule.last_used_at is None or now - rule.last_used_at >= _LAST_USED_RESOLUTION
    ]
    if stale:
        # Bookkeeping only (not audited), like an API token's last_used_at.
        TrustRule.objects.filter(pk__in=stale).update(last_used_at=now)


# --- The issuer's keys -------------------------------------------------------------------------


def _signing_key(issuer: str, kid: Any, algorithm: str) -> Any:
    """The public key to verify with: from the cached key set, or from a fresh one when the
    token names a key the cache lacks (rotated), at most once per OIDC_JWKS_REFETCH_SECONDS."""
    cache_key = f"oidc:jwks:{_sha256(issuer)}"
    keys = cache.get(cache_key)
    fetched_now = False
    if keys is None:
        keys = _fetch_keys_remembering_failure(issuer)
        cache.set(cache_key, keys, timeout=settings.OIDC_JWKS_TTL_SECONDS)
        fetched_now = True
    jwk = _pick(keys, kid, algorithm)
    if (
        jwk is None
        and not fetched_now
        and cache.add(f"oidc:refetch:{_sha256(issuer)}", 1, settings.OIDC_JWKS_REFETCH_SECONDS)
    ):
        keys = _fetch_keys_remembering_failure(issuer)
        cache.set(cache_key, keys, timeout=settings.OIDC_JWKS_TTL_SECONDS)
        jwk = _pick(keys, kid, algorithm)
    if jwk is None:
        raise OidcTokenRefusedError(
            "unknown_key", f"The issuer publishes no {algorithm} key with the token's kid {kid!r}."
        )
    try:
        return jwt.PyJWK(jwk, algorithm=algorithm).key
    except jwt.PyJWKError as exc:
        raise OidcTokenRefusedError(
            "unknown_key", f"The issuer's key {kid!r} is not a usable {algorithm} key."
        ) from exc


def _fetch_keys_remembering_failure(issuer: str) -> list[dict[str, Any]]:
    """`_fetch_keys`, except that after a failure the issuer is not asked again for
    OIDC_JWKS_REFETCH_SECONDS: while it is down, calls are refused at once instead of each
    waiting out the timeout (and the issuer is not hammered)."""
    down_key = f"oidc:down:{_sha256(issuer)}"
    failure = cache.get(down_key)
    if failure is not None:
        raise OidcTokenRefusedError(failure["code"], failure["reason"] + " (retried later)")
    try:
        return _fetch_keys(issuer)
    except OidcTokenRefusedError as exc:
        cache.set(
            down_key,
            {"code": exc.code, "reason": exc.reason},
            timeout=settings.OIDC_JWKS_REFETCH_SECONDS,
        )
        raise


def _pick(keys: list[dict[str, Any]], kid: Any, algorithm: str) -> dict[str, Any] | None:
    """The signing key named `kid` whose type fits `algorithm`; with no kid, the only one."""
    key_type = _KEY_TYPE_OF[algorithm[:2]]
    usable = [
        key
        for key in keys
        if key.get("kty") == key_type
        and key.get("use", "sig") == "sig"
        and key.get("alg", algorithm) == algorithm
    ]
    if kid is None:
        return usable[0] if len(usable) == 1 else None
    return next((key for key in usable if key.get("kid") == kid), None)


def _fetch_keys(issuer: str) -> list[dict[str, Any]]:
    """The issuer's public keys, through its discovery document (OpenID Connect Discovery 1.0,
    section 4: `{issuer without trailing slash}/.well-known/openid-configuration`, whose
    `issuer` must equal the issuer exactly)."""
    discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = _fetch_json(discovery_url, "discovery document")
    if document.get("issuer") != issuer:
        raise OidcTokenRefusedError(
            "issuer_mismatch", "The issuer's discovery document names another issuer."
        )
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or issuer_url_problem(jwks_uri) is not None:
        raise OidcTokenRefusedError(
            "issuer_unusable", "The issuer's discovery document has no usable https jwks_uri."
        )
    key_set = _fetch_json(jwks_uri, "key set")
    keys = key_set.get("keys")
    if not isinstance(keys, list):
        raise OidcTokenRefusedError("issuer_unusable", "The issuer's key set has no keys.")
    return [key for key in keys if isinstance(key, dict)]


def _allow_list() -> outbound.AllowList:
    return outbound.AllowList.of(settings.OIDC_ALLOWED_HOSTS, settings.OIDC_ALLOWED_CIDRS)


def issuer_address_problem(url: str) -> str | None:
    """Why the issuer's host is no place to fetch keys from (it resolves to a loopback,
    link-local, private, … address that OIDC_ALLOWED_HOSTS / OIDC_ALLOWED_CIDRS do not admit),
    or None. A name that does not resolve now passes: every fetch judges the address again."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        outbound.resolve(parts.hostname or "", port, _allow_list())
    except outbound.UnresolvableError:
        return None
    except outbound.DestinationRefusedError as exc:
        # The author is told the kind of address only: which address a name resolves to inside
        # the portal's network is not theirs to map (as at fetch time). The log says it.
        logger.warning("OIDC issuer %r refused by the SSRF guard: %s", url, exc)
        return (
            f"resolves to a {exc.reason or 'refused'} address; keys are fetched from public "
            "addresses only"
        )
    except ValueError:
        return "has an invalid port"
    return None


def _fetch_json(url: str, what: str) -> dict[str, Any]:
    """GET `url` through the SSRF guard (identities.outbound), following at most
    _MAX_REDIRECTS redirects, each hop checked like the first; the whole fetch, redirects
    included, within OIDC_HTTP_TIMEOUT_SECONDS and _MAX_DOCUMENT_BYTES."""
    deadline = time.monotonic() + settings.OIDC_HTTP_TIMEOUT_SECONDS
    for _hop in range(_MAX_REDIRECTS + 1):
        problem = issuer_url_problem(url)
        if problem is not None:
            raise OidcTokenRefusedError("issuer_unusable", f"The issuer's {what} URL {problem}.")
        location, body = _get(url, what, deadline)
        if location is None:
            break
        try:
            url = urljoin(url, location)
        except ValueError as exc:  # a Location such as https://[zz]/
            raise OidcTokenRefusedError(
                "issuer_unusable", f"The issuer's {what} redirects to an invalid URL."
            ) from exc
    else:
        raise OidcTokenRefusedError(
            "issuer_unusable", f"The issuer's {what} redirects more than {_MAX_REDIRECTS} times."
        )
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise OidcTokenRefusedError("issuer_unusable", f"The issuer's {what} is not JSON.") from exc
    if not isinstance(document, dict):
        raise OidcTokenRefusedError("issuer_unusable", f"The issuer's {what} is not an object.")
    return document


def _get(url: str, what: str, deadline: float) -> tuple[str | None, bytes]:
    """One GET: (the redirect's Location, b"") or (None, the 200 answer's body)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OidcTokenRefusedError("issuer_unreachable", f"The issuer's {what} took too long.")
    try:
        connection, path = outbound.open_http(
            url,
            allow=_allow_list(),
            schemes=frozenset({"https", "http"}),
            timeout=remaining,
            ca_bundle=settings.OIDC_ISSUER_CA_BUNDLE,
        )
        try:
            connection.request(
                "GET", path, headers={"Accept": "application/json", "User-Agent": USER_AGENT}
            )
            response = connection.getresponse()
            location = response.getheader("location")
            if response.status in _REDIRECTS and location:
                return location, b""
            if response.status != 200:
                raise OidcTokenRefusedError(
                    "issuer_unreachable", f"The issuer's {what} answered HTTP {response.status}."
                )
            body, cut = outbound.read_capped(response, limit=_MAX_DOCUMENT_BYTES, deadline=deadline)
        finally:
            connection.close()
    except outbound.UnresolvableError as exc:
        raise OidcTokenRefusedError(
            "issuer_unreachable", f"The issuer's {what} could not be fetched."
        ) from exc
    except outbound.DestinationRefusedError as exc:
        # The caller is not told the address (it is the portal's network, not theirs to map);
        # the log says it for the operators.
        logger.warning("OIDC %s fetch refused by the SSRF guard: %s", what, exc)
        raise OidcTokenRefusedError(
            "issuer_forbidden_address",
            f"The issuer's {what} is on a {exc.reason or 'refused'} address; keys are fetched "
            "from public addresses only.",
        ) from exc
    except TimeoutError as exc:
        # A socket read or connect outlasting its timeout (the time left of the budget) is the
        # budget spent, whichever of the deadline check or the socket noticed first.
        raise OidcTokenRefusedError(
            "issuer_unreachable", f"The issuer's {what} took too long."
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise OidcTokenRefusedError(
            "issuer_unreachable", f"The issuer's {what} could not be fetched."
        ) from exc
    if cut == "too_slow":
        raise OidcTokenRefusedError("issuer_unreachable", f"The issuer's {what} took too long.")
    if cut == "too_large":
        raise OidcTokenRefusedError("issuer_unusable", f"The issuer's {what} is too large.")
    return None, body


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _record_refusal(exc: OidcTokenRefusedError, asserted: dict[str, Any], address: str) -> None:
    """An audit row per refused token (the reason, the address and what the token claimed,
    unverified) for the first OIDC_REFUSAL_AUDIT_LIMIT refusals of `address` in the window;
    past that a log line and the counter only."""
    limit = settings.OIDC_REFUSAL_AUDIT_LIMIT
    window = settings.OIDC_REFUSAL_AUDIT_WINDOW_SECONDS
    refusals, window_ends = _count_refusal(address, window)
    audited = refusals <= limit
    TOKENS_REFUSED.labels(reason=exc.code, audited=str(audited).lower()).inc()
    if not audited:
        # Not the token, nor its claims: only what the portal decided.
        logger.warning(
            "OIDC token refused (%s) from %s, not audited: %d refusals from this address "
            "since the window began, OIDC_REFUSAL_AUDIT_LIMIT is %d",
            exc.code,
            address or "(unknown address)",
            refusals,
            limit,
        )
        return
    # Capped: the claims are the caller's, and the trail must not be a place to dump data.
    claimed = {
        name: None if value is None else str(value)[:_CLAIM_RECORD_MAX]
        for name, value in asserted.items()
    }
    data: dict[str, Any] = {
        "reason": exc.code,
        "message": exc.reason,
        "address": address or None,
        "claimed": claimed,
    }
    if refusals == limit:
        # The trail says where it stops recording this address's refusals, and until when.
        data["not_audited_until"] = window_ends
    with transaction.atomic():
        audit_record(
            actor=None, actor_label=REFUSED_LABEL, action=AuditAction.OIDC_TOKEN_REFUSED, data=data
        )


def _count_refusal(address: str, window: int) -> tuple[int, datetime]:
    """Count one refusal for `address` in the current window: (refusals of the address in it,
    this one included; when the window ends). The default cache, as the sign-in throttle's
    counters: Redis with CACHE_URL, shared by every web process, else the machine's folder."""
    now = time.time()
    start = int(now) // window * window
    window_ends = datetime.fromtimestamp(start + window, tz=UTC)
    # The window is named in the key, so it ends on time whatever the backend does to the
    # key's expiry (the file cache's incr writes the key again with the cache's default
    # timeout, 300 s: a longer window may start over after that long without a refusal).
    key = f"oidc:refused:{_sha256(address)}:{start}"
    try:
        cache.add(key, 0, timeout=window)
        try:
            refusals = int(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)
            refusals = 1
    except Exception:  # the cache is down: audit as before rather than lose the refusal
        logger.exception("OIDC refusal count: the cache is unreachable; auditing this refusal")
        return 1, window_ends
    # On the file cache add and incr are a read then a write: concurrent refusals of one address
    # may count once between them, so a burst may get a few more rows than the limit (at most
    # about as many as run at once); Redis's INCR is exact.
    return refusals, window_ends
