"""The SSRF guard on trust rules' issuers (identities.outbound, shared with webhooks): a rule
naming an issuer on a loopback, link-local (the metadata service), private, multicast or
reserved address is refused at creation naming the field; at fetch time the issuer, each
redirect hop and the jwks_uri the discovery document names are judged again, and the fetch is
capped in size and time. Against the real local issuer (tests/support/oidc_issuer.py)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.machines import trust_rule_create
from accounts.models import TrustRule
from identities import outbound
from identities.errors import PolicyViolationError
from identities.models import AuditEvent
from tests.support.oidc_issuer import AUDIENCE, MOVED, LocalIssuer

pytestmark = pytest.mark.django_db

RULES = "/api/v1/trust-rules/"
REQUESTS = "/api/v1/identity-requests/"


def make_rule(requester: Any, team: Any, issuer: str) -> TrustRule:
    return trust_rule_create(
        actor=requester,
        team=team,
        service_principal="deploy-pipeline",
        name="payments main branch",
        issuer=issuer,
        audience=AUDIENCE,
        subject="repo:contoso/payments:ref:refs/heads/main",
        scopes=["read"],
    )


def refused_with(issuer: LocalIssuer, reason: str) -> AuditEvent:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issuer.mint()}")
    response = client.get(REQUESTS)
    assert response.status_code == 401, response.content
    event = AuditEvent.objects.filter(action="oidc_token.refused").order_by("id").last()
    assert event is not None
    assert event.data["reason"] == reason, event.data
    return event


@pytest.mark.parametrize(
    "issuer",
    [
        "https://127.0.0.1",
        "http://localhost:8080",  # a name resolving to loopback (http: DEBUG allows loopback)
        "https://169.254.169.254/metadata/identity",  # the instance metadata service
        "https://[fe80::1]",
        "https://10.1.2.3",
        "https://192.168.0.10/issuer",
        "https://[fd00::1]",
        "https://[::1]",
        "https://[::ffff:169.254.169.254]",
        "https://224.0.0.1",
        "https://240.0.0.1",
        "https://0.0.0.0",
    ],
)
def test_a_rule_for_an_issuer_on_a_forbidden_address_is_refused_naming_the_field(
    issuer: str, requester: Any, team: Any
) -> None:
    with pytest.raises(PolicyViolationError) as caught:
        make_rule(requester, team, issuer)

    (violation,) = caught.value.result.violations
    assert (violation.field, violation.rule) == ("issuer", "forbidden_address")
    assert "address" in violation.message
    assert not TrustRule.objects.exists()


def test_the_api_names_the_issuer_field_and_the_rule(requester: Any, client_for: Any) -> None:
    body = {
        "team": "payments",
        "service_principal": "deploy-pipeline",
        "name": "metadata",
        "issuer": "https://169.254.169.254",
        "audience": AUDIENCE,
        "subject": "repo:contoso/payments:ref:refs/heads/main",
        "scopes": ["read"],
    }

    response = client_for(requester).post(RULES, body, format="json")

    assert response.status_code == 400, response.content
    errors = {error["field"]: error for error in response.json()["errors"]}
    assert errors["issuer"]["rule"] == "forbidden_address"
    assert "a link-local address" in errors["issuer"]["message"]


def test_an_allow_listed_host_is_accepted_and_a_name_that_does_not_resolve_is_left_to_fetch(
    requester: Any, team: Any, settings: Any
) -> None:
    settings.OIDC_ALLOWED_HOSTS = ["10.1.2.3"]
    make_rule(requester, team, "https://10.1.2.3/gitlab")
    # No DNS answer now: nothing to judge yet; every fetch resolves and judges it again.
    trust_rule_create(
        actor=requester,
        team=team,
        service_principal="other",
        name="unresolvable",
        issuer="https://ci.invalid",
        audience=AUDIENCE,
        subject="x",
        scopes=["read"],
    )


def test_an_issuer_that_became_forbidden_is_refused_at_fetch_time_without_contact(
    requester: Any, team: Any, oidc_issuer: LocalIssuer, settings: Any
) -> None:
    make_rule(requester, team, oidc_issuer.url)
    settings.OIDC_ALLOWED_HOSTS = []  # as if its name now pointed somewhere private

    event = refused_with(oidc_issuer, "issuer_forbidden_address")

    assert oidc_issuer.discovery_fetches == 0 and oidc_issuer.fetches == 0
    assert "loopback" in event.data["message"]
    assert "127.0.0.1" not in event.data["message"]  # the caller is not told the address


def test_a_jwks_uri_pointing_at_a_loopback_name_is_refused(
    requester: Any, team: Any, oidc_issuer: LocalIssuer
) -> None:
    port = oidc_issuer.url.rsplit(":", 1)[1]
    oidc_issuer.jwks_uri = f"http://localhost:{port}/.well-known/jwks"
    make_rule(requester, team, oidc_issuer.url)

    refused_with(oidc_issuer, "issuer_forbidden_address")

    assert oidc_issuer.discovery_fetches == 1
    assert oidc_issuer.fetches == 0  # the key set was never asked for


def test_a_jwks_uri_pointing_at_the_metadata_service_is_refused(
    requester: Any, team: Any, oidc_issuer: LocalIssuer
) -> None:
    oidc_issuer.jwks_uri = "https://169.254.169.254/metadata/identity/oauth2/token"
    make_rule(requester, team, oidc_issuer.url)

    event = refused_with(oidc_issuer, "issuer_forbidden_address")

    assert "link-local" in event.data["message"]


def test_a_redirect_is_followed_only_to_an_admitted_address(
    requester: Any, team: Any, oidc_issuer: LocalIssuer
) -> None:
    port = oidc_issuer.url.rsplit(":", 1)[1]
    make_rule(requester, team, oidc_issuer.url)
    oidc_issuer.discovery_location = f"http://localhost:{port}{MOVED}"

    refused_with(oidc_issuer, "issuer_forbidden_address")
    assert oidc_issuer.discovery_fetches == 1  # the hop to localhost was never made

    # The same server under its admitted name: the redirect is followed.
    oidc_issuer.discovery_location = f"{oidc_issuer.url}{MOVED}"
    cache.clear()  # forget the remembered failure
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {oidc_issuer.mint()}")
    assert client.get(REQUESTS).status_code == 200
    assert oidc_issuer.discovery_fetches == 3


def test_a_key_set_sent_too_slowly_is_cut_off_at_the_time_limit(
    requester: Any, team: Any, oidc_issuer: LocalIssuer, settings: Any
) -> None:
    settings.OIDC_HTTP_TIMEOUT_SECONDS = 1
    oidc_issuer.drip_seconds = 3  # each read answers within the socket timeout; all of it does not
    make_rule(requester, team, oidc_issuer.url)

    event = refused_with(oidc_issuer, "issuer_unreachable")

    assert "took too long" in event.data["message"]


def test_an_oversized_key_set_is_refused(
    requester: Any, team: Any, oidc_issuer: LocalIssuer
) -> None:
    oidc_issuer.pad_bytes = 300 * 1024
    make_rule(requester, team, oidc_issuer.url)

    event = refused_with(oidc_issuer, "issuer_unusable")

    assert "too large" in event.data["message"]


def test_the_connected_peer_is_checked_again_whatever_was_resolved() -> None:
    """DNS rebinding: the address connected to is judged by itself, so an address that reached
    connect() by any path is still refused when the peer is not public."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        loopback = outbound.vet_address(
            "rebind.example", "127.0.0.1", outbound.AllowList.of([], ["127.0.0.1/32"])
        )
        with pytest.raises(outbound.DestinationRefusedError, match="a loopback address"):
            outbound.connect(
                "rebind.example", port, loopback, allow=outbound.AllowList(), tls=False, timeout=2
            )
    finally:
        listener.close()
