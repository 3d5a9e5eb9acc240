"""A pipeline's own OIDC token as the API credential, against a real local issuer (HTTP server,
discovery document, JWKS with keys generated here): every bad token is a 401 problem document
with an audit row saying why; a good one files a request as the team's service principal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.machines import trust_rule_create, trust_rule_disable
from accounts.models import TrustRule
from accounts.oidc import OidcTokenRefusedError, _refuse_replay
from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import new_request_body
from tests.support.oidc_issuer import AUDIENCE, LocalIssuer, new_key

pytestmark = pytest.mark.django_db

REQUESTS = "/api/v1/identity-requests/"
PRINCIPAL = "svc:payments/deploy-pipeline"


@pytest.fixture
def rule(
    requester: Any, team: Any, cluster: Any, catalog: Any, oidc_issuer: LocalIssuer
) -> TrustRule:
    """payments trusts contoso/payments' main branch to read and file requests."""
    return trust_rule_create(
        actor=requester,
        team=team,
        service_principal="deploy-pipeline",
        name="payments main branch",
        issuer=oidc_issuer.url,
        audience=AUDIENCE,
        subject_pattern="repo:contoso/payments:*",
        claims={"ref": "refs/heads/main", "repository": "contoso/payments"},
        scopes=["read", "request"],
    )


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def refusals() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="oidc_token.refused").order_by("id"))


def assert_refused(response: Any, reason: str) -> AuditEvent:
    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 401
    assert problem["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    event = refusals()[-1]
    assert event.data["reason"] == reason
    assert event.actor is None
    assert event.actor_label == "unauthenticated"
    return event


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(issuer: LocalIssuer) -> str:
    """The classic key-confusion forgery: HMAC-SHA256 keyed with the issuer's public key PEM
    (PyJWT refuses to make one, so it is made by hand)."""
    pem = issuer.current.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.current.kid}).encode())
    payload = _b64(json.dumps(issuer.claims()).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def alg_none(issuer: LocalIssuer) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": issuer.current.kid}).encode())
    return f"{header}.{_b64(json.dumps(issuer.claims()).encode())}."


def forged(issuer: LocalIssuer) -> str:
    """Signed by a key of the attacker's that claims the issuer's kid."""
    impostor = new_key()
    impostor.kid = issuer.current.kid
    return issuer.mint(key=impostor)


NOW = int(time.time())
BAD_TOKENS: dict[str, tuple[Callable[[LocalIssuer], str], str]] = {
    "forged signature": (forged, "bad_signature"),
    "expired": (
        lambda i: i.mint(iat=int(time.time()) - 3600, nbf=None, exp=int(time.time()) - 600),
        "expired",
    ),
    "not yet valid": (lambda i: i.mint(nbf=int(time.time()) + 3600), "not_yet_valid"),
    "issued in the future": (
        lambda i: i.mint(iat=int(time.time()) + 3600, nbf=None, exp=int(time.time()) + 7200),
        "not_yet_valid",
    ),
    "without exp": (lambda i: i.mint(exp=None), "invalid"),
    "wrong audience": (lambda i: i.mint(aud="api://AzureADTokenExchange"), "wrong_audience"),
    "wrong issuer": (
        lambda i: i.mint(iss="https://token.actions.githubusercontent.com"),
        "unknown_issuer",
    ),
    "issuer with a trailing slash": (lambda i: i.mint(iss=i.url + "/"), "unknown_issuer"),
    "wrong subject": (
        lambda i: i.mint(sub="repo:contoso/search:ref:refs/heads/main"),
        "no_matching_rule",
    ),
    "wrong claim": (lambda i: i.mint(ref="refs/heads/feature"), "no_matching_rule"),
    "claim missing": (lambda i: i.mint(repository=None), "no_matching_rule"),
    "alg none": (alg_none, "algorithm_not_allowed"),
    "HS256 signed with the public key": (hs256_with_public_key, "algorithm_not_allowed"),
    "not a JWT at all": (lambda i: "eyJhbGciOi.not-base64!.x", "malformed"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_every_bad_token_is_a_401_problem_with_an_audit_row(
    case: str, rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    make, reason = BAD_TOKENS[case]
    token = make(oidc_issuer)

    response = bearer(token).post(REQUESTS, new_request_body(), format="json")

    event = assert_refused(response, reason)
    assert not IdentityRequest.objects.exists()
    signature = token.split(".")[-1]
    assert token not in json.dumps(event.data)
    assert not signature or signature not in json.dumps(event.data)


def test_a_good_token_files_a_request_as_the_teams_service_principal(
    rule: TrustRule,
    oidc_issuer: LocalIssuer,
    teammate: Any,
    client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = oidc_issuer.mint(jti="run-7-call-1")
    with caplog.at_level("INFO", logger="accounts.oidc"):
        response = bearer(token).post(REQUESTS, new_request_body(), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["requester"] == PRINCIPAL
    identity_request = IdentityRequest.objects.get()
    assert identity_request.requester.get_username() == PRINCIPAL
    filed = AuditEvent.objects.get(action="identity_request.created")
    assert filed.actor_label == PRINCIPAL
    assert not refusals()
    assert f"OIDC token accepted as {PRINCIPAL}" in caplog.text
    assert "'run-7-call-1'" in caplog.text
    assert token.split(".")[-1] not in caplog.text
    rule.refresh_from_db()
    assert rule.last_used_at is not None
    # The request page names the principal to the team's people.
    client.force_login(teammate)
    page = client.get(f"/requests/{identity_request.pk}/")
    assert page.status_code == 200
    assert PRINCIPAL in page.content.decode()


def test_a_token_is_good_for_one_call_its_jti_replayed_is_refused(
    rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    token = oidc_issuer.mint(jti="run-42-attempt-1")
    assert bearer(token).get(REQUESTS).status_code == 200

    assert_refused(bearer(token).get(REQUESTS), "replayed")
    # Another token with the same jti is the same token, as far as replay goes.
    repeat = oidc_issuer.mint(jti="run-42-attempt-1", iat=NOW - 5)
    assert_refused(bearer(repeat).get(REQUESTS), "replayed")
    assert bearer(oidc_issuer.mint()).get(REQUESTS).status_code == 200


def test_a_token_without_jti_is_remembered_by_its_hash(
    rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    first, second = oidc_issuer.mint(jti=None), oidc_issuer.mint(jti=None, iat=NOW - 1)
    assert bearer(first).get(REQUESTS).status_code == 200
    assert bearer(second).get(REQUESTS).status_code == 200

    assert_refused(bearer(first).get(REQUESTS), "replayed")


def test_keys_are_cached_and_a_rotated_key_is_fetched_once(
    rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    for _ in range(3):
        assert bearer(oidc_issuer.mint()).get(REQUESTS).status_code == 200
    assert oidc_issuer.fetches == 1

    oidc_issuer.rotate("ES256")
    assert bearer(oidc_issuer.mint()).get(REQUESTS).status_code == 200
    assert oidc_issuer.fetches == 2


def test_an_unknown_kid_refetches_once_then_is_refused_and_refetching_is_rate_limited(
    rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    assert bearer(oidc_issuer.mint()).get(REQUESTS).status_code == 200
    unpublished = new_key()

    assert_refused(bearer(oidc_issuer.mint(key=unpublished)).get(REQUESTS), "unknown_key")
    assert oidc_issuer.fetches == 2  # the one refetch a rotation may need
    assert_refused(bearer(oidc_issuer.mint(key=new_key())).get(REQUESTS), "unknown_key")
    assert oidc_issuer.fetches == 2  # no second refetch within OIDC_JWKS_REFETCH_SECONDS


def test_an_issuer_that_is_down_is_asked_again_only_after_the_refetch_interval(
    rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    oidc_issuer.down = True

    with override_settings(OIDC_JWKS_REFETCH_SECONDS=1):
        assert_refused(bearer(oidc_issuer.mint()).get(REQUESTS), "issuer_unreachable")
        assert_refused(bearer(oidc_issuer.mint()).get(REQUESTS), "issuer_unreachable")
        assert oidc_issuer.discovery_fetches == 1  # the second call was refused without asking

        oidc_issuer.down = False
        time.sleep(1.5)  # the interval passes
        assert bearer(oidc_issuer.mint()).get(REQUESTS).status_code == 200
    assert oidc_issuer.discovery_fetches == 2


def test_keys_are_fetched_over_https_only_unless_loopback_http_is_allowed(
    rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    with override_settings(OIDC_ALLOW_HTTP_LOOPBACK=False):
        response = bearer(oidc_issuer.mint()).get(REQUESTS)

    assert_refused(response, "issuer_unusable")
    assert oidc_issuer.fetches == 0 and oidc_issuer.discovery_fetches == 0


def test_scopes_come_from_the_rule(requester: Any, team: Any, oidc_issuer: LocalIssuer) -> None:
    trust_rule_create(
        actor=requester,
        team=team,
        service_principal="reader",
        name="read only",
        issuer=oidc_issuer.url,
        audience=AUDIENCE,
        subject="repo:contoso/payments:ref:refs/heads/main",
        scopes=["read"],
    )
    assert bearer(oidc_issuer.mint()).get(REQUESTS).status_code == 200

    response = bearer(oidc_issuer.mint()).post(REQUESTS, new_request_body(), format="json")

    assert response.status_code == 403
    assert "needs 'request'" in response.json()["detail"]


def test_a_rule_of_team_a_cannot_file_for_team_b(rule: TrustRule, oidc_issuer: LocalIssuer) -> None:
    body = new_request_body(team="search", namespace="search", app_name="indexer")

    response = bearer(oidc_issuer.mint()).post(REQUESTS, body, format="json")

    assert response.status_code == 403, response.content
    assert not IdentityRequest.objects.exists()


def test_a_disabled_rule_trusts_nothing(
    rule: TrustRule, requester: Any, oidc_issuer: LocalIssuer
) -> None:
    trust_rule_disable(rule=rule, actor=requester)

    assert_refused(bearer(oidc_issuer.mint()).get(REQUESTS), "unknown_issuer")


def test_rules_of_two_principals_matching_one_token_are_ambiguous(
    rule: TrustRule, requester: Any, team: Any, oidc_issuer: LocalIssuer
) -> None:
    trust_rule_create(
        actor=requester,
        team=team,
        service_principal="another",
        name="overlapping",
        issuer=oidc_issuer.url,
        audience=AUDIENCE,
        claims={"repository": "contoso/payments"},
        scopes=["read"],
    )

    assert_refused(bearer(oidc_issuer.mint()).get(REQUESTS), "ambiguous")


def test_me_names_the_service_principal(rule: TrustRule, oidc_issuer: LocalIssuer) -> None:
    response = bearer(oidc_issuer.mint()).get("/api/v1/me/")

    assert response.status_code == 200
    assert response.json()["username"] == PRINCIPAL
    assert response.json()["teams"] == ["payments"]


def test_concurrent_uses_of_one_token_let_exactly_one_through_with_a_redis_cache(
    private_redis: Any,
) -> None:
    """The replay check is one atomic add (SET NX) in a shared Redis cache: of many web
    processes presenting the same token at once, one wins. (The default file cache checks and
    then writes, so a production web tier sets CACHE_URL.)"""
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": private_redis.url(),
        }
    }
    claims = {"jti": "same-token", "exp": int(time.time()) + 300}
    barrier = threading.Barrier(16)
    outcomes: list[str] = []

    def present() -> None:
        barrier.wait()
        try:
            _refuse_replay("header.payload.signature", "https://issuer.example", claims)
            outcomes.append("accepted")
        except OidcTokenRefusedError as exc:
            outcomes.append(exc.code)

    with override_settings(CACHES=caches):
        threads = [threading.Thread(target=present) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

    assert sorted(outcomes) == ["accepted"] + ["replayed"] * 15
