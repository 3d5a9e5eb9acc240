"""Hardening of the OIDC trust rules: refused bearer tokens cannot grow the audit trail at will
(a bound per client address, past which refusals are logged and counted only), a subject
pattern must name an owner before its first `*`, the issuer check does not tell its author what
an internal name resolves to, and an unparseable issuer URL is a 400 (or a refusal), never a
500. Against the real local issuer (tests/support/oidc_issuer.py), as test_oidc_trust.py."""

from __future__ import annotations

import functools
import ipaddress
import re
import time
from typing import Any

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from accounts.machines import trust_rule_create
from accounts.models import TrustRule
from identities.models import AuditEvent
from tests.support.oidc_issuer import AUDIENCE, LocalIssuer, SigningKey, new_key

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"
RULES = "/api/v1/trust-rules/"
GITHUB = "https://token.actions.githubusercontent.com"
ATTACKER, OTHER = "203.0.113.7", "198.51.100.20"
# Windows are aligned to the clock (a window of 60 s is a clock minute): a test counting within
# one window makes it long enough that no boundary falls between its requests.
ONE_WINDOW = override_settings(OIDC_REFUSAL_AUDIT_WINDOW_SECONDS=10**9)


@pytest.fixture
def rule(requester: Any, team: Any, oidc_issuer: LocalIssuer) -> TrustRule:
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


@functools.cache
def impostor_key() -> SigningKey:
    return new_key()


def forged(issuer: LocalIssuer) -> str:
    """Signed by a key of the attacker's that claims the issuer's kid, with claims chosen to
    fill the audit row (each is cut at 300 characters)."""
    impostor = SigningKey(issuer.current.kid, "RS256", impostor_key().private)
    return issuer.mint(key=impostor, sub="repo:" + "x" * 1000, jti="j" * 1000)


def present(token: str, address: str) -> Any:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(ME)


def refusals(address: str | None = None) -> list[AuditEvent]:
    events = AuditEvent.objects.filter(action="oidc_token.refused").order_by("id")
    return [event for event in events if address is None or event.data["address"] == address]


def refused_count(audited: str) -> float:
    value = REGISTRY.get_sample_value(
        "portal_oidc_tokens_refused_total", {"reason": "bad_signature", "audited": audited}
    )
    return value or 0.0


def assert_401(response: Any) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert response["WWW-Authenticate"].startswith("Bearer")


# --- Refusals: audited up to a bound per client address ----------------------------------------


@ONE_WINDOW
def test_twenty_forged_tokens_from_one_address_write_five_audit_rows_and_all_get_401(
    rule: TrustRule, oidc_issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = [forged(oidc_issuer) for _ in range(20)]
    audited_before, unaudited_before = refused_count("true"), refused_count("false")

    with caplog.at_level("WARNING", logger="accounts.oidc"):
        responses = [present(token, ATTACKER) for token in tokens]

    for response in responses:
        assert_401(response)
    rows = refusals()
    assert len(rows) == 5  # OIDC_REFUSAL_AUDIT_LIMIT's default
    assert {row.data["address"] for row in rows} == {ATTACKER}
    assert all(row.data["reason"] == "bad_signature" for row in rows)
    # The last audited row says the trail stops recording the address, and until when.
    assert "not_audited_until" in rows[-1].data
    assert all("not_audited_until" not in row.data for row in rows[:-1])
    # The other fifteen: a WARNING each (no token, no claims) and the counter.
    unaudited = [r for r in caplog.records if "not audited" in r.getMessage()]
    assert len(unaudited) == 15
    assert all(r.levelname == "WARNING" and ATTACKER in r.getMessage() for r in unaudited)
    assert not any(token.split(".")[-1] in caplog.text for token in tokens)
    assert "x" * 50 not in caplog.text
    assert refused_count("true") - audited_before == 5
    assert refused_count("false") - unaudited_before == 15
    # Nothing is locked: a good token from the same address (a shared NAT) still works.
    response = present(oidc_issuer.mint(), ATTACKER)
    assert response.status_code == 200, response.content
    assert response.json()["username"] == "svc:payments/deploy-pipeline"


@ONE_WINDOW
@override_settings(OIDC_REFUSAL_AUDIT_LIMIT=2)
def test_two_addresses_are_counted_apart(rule: TrustRule, oidc_issuer: LocalIssuer) -> None:
    for _ in range(4):
        assert_401(present(forged(oidc_issuer), ATTACKER))
    for _ in range(3):
        assert_401(present(forged(oidc_issuer), OTHER))

    assert len(refusals(ATTACKER)) == 2
    assert len(refusals(OTHER)) == 2  # the attacker's refusals used none of its allowance


@override_settings(OIDC_REFUSAL_AUDIT_LIMIT=1, OIDC_REFUSAL_AUDIT_WINDOW_SECONDS=2)
def test_the_allowance_comes_back_when_the_window_ends(
    rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    """On the file cache too, whose incr writes the counter again with the default timeout."""
    time.sleep(2 - time.time() % 2 + 0.05)  # the start of a two-second window
    assert_401(present(forged(oidc_issuer), ATTACKER))
    assert_401(present(forged(oidc_issuer), ATTACKER))
    assert len(refusals()) == 1

    time.sleep(2 - time.time() % 2 + 0.05)  # the next window
    assert_401(present(forged(oidc_issuer), ATTACKER))

    assert len(refusals()) == 2


@ONE_WINDOW
def test_the_bound_holds_with_a_redis_cache(
    rule: TrustRule, oidc_issuer: LocalIssuer, private_redis: Any
) -> None:
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": private_redis.url(),
        }
    }
    with override_settings(CACHES=caches):
        for _ in range(12):
            assert_401(present(forged(oidc_issuer), ATTACKER))
        assert_401(present(forged(oidc_issuer), OTHER))

    assert len(refusals(ATTACKER)) == 5
    assert len(refusals(OTHER)) == 1


# --- A subject pattern names an owner ----------------------------------------------------------


def rule_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "team": "payments",
        "service_principal": "deploy-pipeline",
        "name": "payments pipelines",
        "issuer": GITHUB,
        "audience": AUDIENCE,
        "scopes": ["read"],
    }
    body.update(overrides)
    return body


def errors_of(response: Any) -> dict[str, dict[str, str]]:
    assert response.status_code == 400, response.content
    return {error["field"]: error for error in response.json()["errors"]}


@pytest.mark.parametrize("pattern", ["repo:*", "r*", "repo:/*", "repo:contoso*"])
def test_a_pattern_that_names_no_owner_is_refused(
    pattern: str, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(RULES, rule_body(subject_pattern=pattern), format="json")

    error = errors_of(response)["subject_pattern"]
    assert error["rule"] == "too_broad"
    assert "repo:contoso/payments:*" in error["message"]  # what to write instead
    assert not TrustRule.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("pinned", "unpinned"),
    [
        ("repo:contoso/app:*", "repo:*"),  # GitHub
        ("repo:contoso/*", "repo:conto*"),
        ("project_path:contoso/payments:*", "project_path:*"),  # GitLab
        ("sc://contoso/payments/*", "sc://*"),  # Azure DevOps: its slashes name nobody
    ],
)
def test_a_pattern_naming_the_owner_is_accepted_and_without_it_refused(
    pinned: str, unpinned: str, requester: Any, client_for: Any
) -> None:
    client = client_for(requester)

    refused = client.post(RULES, rule_body(subject_pattern=unpinned), format="json")
    accepted = client.post(RULES, rule_body(subject_pattern=pinned), format="json")

    assert errors_of(refused)["subject_pattern"]["rule"] == "too_broad"
    assert accepted.status_code == 201, accepted.content
    assert TrustRule.objects.get().subject_pattern == pinned


# --- The issuer check names the kind of address, never the address ----------------------------


def addresses_in(text: str) -> list[str]:
    found = []
    for word in re.findall(r"[0-9A-Fa-f:.]{2,}", text):
        try:
            found.append(str(ipaddress.ip_address(word.strip(".:"))))
        except ValueError:
            continue
    return found


def test_an_issuer_name_resolving_to_loopback_is_refused_without_the_address(
    requester: Any, client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="accounts.oidc"):
        response = client_for(requester).post(
            RULES, rule_body(issuer="https://localhost/ci", subject="x"), format="json"
        )

    error = errors_of(response)["issuer"]
    assert error["rule"] == "forbidden_address"
    assert "a loopback address" in error["message"]
    assert addresses_in(error["message"]) == []
    assert addresses_in(response.content.decode()) == []
    # The operators are told, in the log.
    assert "127.0.0.1" in caplog.text or "::1" in caplog.text


# --- An unparseable issuer URL --------------------------------------------------------------------


@pytest.mark.parametrize(
    "issuer", ["https://[zz]/", "https://[zz]", "https://[::1/", "https://ci.example.com:99999"]
)
def test_an_unparseable_issuer_is_a_400_naming_the_field(
    issuer: str, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(
        RULES, rule_body(issuer=issuer, subject="x"), format="json"
    )

    assert errors_of(response)["issuer"]["rule"] == "invalid_url"
    assert not TrustRule.objects.exists()


def test_an_unparseable_jwks_uri_is_a_refusal_not_an_error(
    rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    oidc_issuer.jwks_uri = "https://[zz]/keys"

    assert_401(present(oidc_issuer.mint(), ATTACKER))

    assert refusals()[-1].data["reason"] == "issuer_unusable"


def test_a_redirect_to_an_unparseable_url_is_a_refusal_not_an_error(
    rule: TrustRule, oidc_issuer: LocalIssuer
) -> None:
    oidc_issuer.discovery_location = "https://[zz]/"

    assert_401(present(oidc_issuer.mint(), ATTACKER))

    assert refusals()[-1].data["reason"] == "issuer_unusable"
