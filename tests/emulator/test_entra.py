"""Entra ID: the portal's client-secret login and workload identity federation (AZURE-FACTS §4)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential, ClientSecretCredential
from azure.mgmt.msi.models import FederatedIdentityCredential
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client

from tests.emulator.conftest import RG, IdentityFactory
from tests.support.emulator import (
    ARM_SCOPE,
    EXCHANGE_AUDIENCE,
    AzureClients,
    Emulator,
    kube_api_client,
)

NS, SA = "team-a", "workload-sa"
SUBJECT = f"system:serviceaccount:{NS}:{SA}"


def test_the_portal_logs_in_with_client_secret_credential_through_msal(emulator: Emulator) -> None:
    token = emulator.credential().get_token(ARM_SCOPE)

    keys = requests.get(
        f"{emulator.url}/{emulator.tenant_id}/discovery/v2.0/keys",
        verify=str(emulator.ca_path),
        timeout=10,
    ).json()
    claims = jwt.decode(
        token.token,
        jwt.PyJWK(keys["keys"][0]).key,
        algorithms=["RS256"],
        audience="https://management.azure.com/",
    )
    assert claims["tid"] == emulator.tenant_id
    assert claims["appid"] == emulator.portal_client["client_id"]
    assert token.expires_on > time.time() + 3000
    ops = [e["op"] for e in emulator.requests()]
    assert ops[:2] == ["entra.discovery", "entra.token.secret"]


def test_a_wrong_secret_and_an_unknown_client_are_refused(emulator: Emulator) -> None:
    portal = emulator.portal_client
    common: dict[str, Any] = {
        "authority": emulator.url,
        "disable_instance_discovery": True,
        "connection_verify": str(emulator.ca_path),
    }
    wrong_secret = ClientSecretCredential(
        portal["tenant_id"], portal["client_id"], "nope", **common
    )
    unknown = ClientSecretCredential(
        portal["tenant_id"], "00000000-0000-0000-0000-000000000001", "x", **common
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        wrong_secret.get_token(ARM_SCOPE)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        unknown.get_token(ARM_SCOPE)


@pytest.fixture
def federation(
    emulator: Emulator, azure_clients: AzureClients, make_identity: IdentityFactory
) -> dict[str, Any]:
    """A cluster, a ServiceAccount on it, a UAMI, and a TokenRequest token for the account."""
    cluster = emulator.register_cluster()
    core = client.CoreV1Api(kube_api_client(emulator, cluster))
    core.patch_namespaced_service_account(
        SA,
        NS,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA, "namespace": NS}},
        field_manager="tests",
        _content_type="application/apply-patch+yaml",
    )
    issued = core.create_namespaced_service_account_token(
        SA, NS, {"spec": {"audiences": [EXCHANGE_AUDIENCE], "expirationSeconds": 3600}}
    )
    return {
        "cluster": cluster,
        "identity": make_identity("id-workload"),
        "token": issued.status.token,
    }


def add_fic(azure_clients: AzureClients, issuer: str, subject: str = SUBJECT) -> None:
    azure_clients.msi.federated_identity_credentials.create_or_update(
        RG,
        "id-workload",
        "fic-workload",
        FederatedIdentityCredential(issuer=issuer, subject=subject, audiences=[EXCHANGE_AUDIENCE]),
    )


def exchange(emulator: Emulator, client_id: str, assertion: str) -> Any:
    credential = ClientAssertionCredential(
        emulator.tenant_id,
        client_id,
        lambda: assertion,
        authority=emulator.url,
        connection_verify=str(emulator.ca_path),
    )
    return credential.get_token(ARM_SCOPE)


def test_a_service_account_token_is_exchanged_for_an_arm_token(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    add_fic(azure_clients, federation["cluster"]["issuer_url"])
    identity = federation["identity"]

    access = exchange(emulator, identity.client_id, federation["token"])

    claims = jwt.decode(access.token, options={"verify_signature": False})
    assert (claims["oid"], claims["appid"]) == (identity.principal_id, identity.client_id)
    assert claims["xms_mirid"] == identity.id
    # The exchanged token is a real ARM token for the emulator.
    response = requests.get(
        f"{emulator.url}{identity.id}",
        params={"api-version": "2024-11-30"},
        headers={"Authorization": f"Bearer {access.token}"},
        verify=str(emulator.ca_path),
        timeout=10,
    )
    assert response.status_code == 200


def token_error(emulator: Emulator, federation: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The raw token endpoint answer to the federation's ServiceAccount token."""
    response = requests.post(
        f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "client_assertion": federation["token"],
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_id": federation["identity"].client_id,
            "grant_type": "client_credentials",
            "scope": ARM_SCOPE,
        },
        verify=str(emulator.ca_path),
        timeout=10,
    )
    return response.status_code, response.json()


def test_an_issuer_mismatch_is_aadsts700211_naming_the_issuer(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    issuer = federation["cluster"]["issuer_url"]
    add_fic(azure_clients, issuer.rstrip("/"))  # the trailing slash matters

    with pytest.raises(ClientAuthenticationError) as caught:
        exchange(emulator, federation["identity"].client_id, federation["token"])

    assert (
        "AADSTS700211: No matching federated identity record found for presented assertion "
        f"issuer '{issuer}'. Please check your federated identity credential Subject, Audience "
        "and Issuer against the presented assertion." in str(caught.value)
    )


def test_a_subject_mismatch_is_aadsts700213_naming_the_subject(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    add_fic(
        azure_clients,
        federation["cluster"]["issuer_url"],
        subject="system:serviceaccount:team-a:other-sa",
    )

    with pytest.raises(ClientAuthenticationError) as caught:
        exchange(emulator, federation["identity"].client_id, federation["token"])

    assert (
        "AADSTS700213: No matching federated identity record found for presented assertion "
        f"subject '{SUBJECT}'. Check your federated identity credential Subject, Audience and "
        "Issuer against the presented assertion." in str(caught.value)
    )


def test_a_subject_differing_only_in_case_is_aadsts7002138(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    add_fic(azure_clients, federation["cluster"]["issuer_url"], subject=SUBJECT.upper())

    status, body = token_error(emulator, federation)

    assert status == 401
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7002138]
    assert (
        "The subject matches with case-insensitive comparison, but not with case-sensitive"
        in (body["error_description"])
    )


def test_the_legacy_knob_answers_aadsts70021_naming_the_assertion(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    emulator.config(fic_mismatch_errors="legacy")
    issuer = federation["cluster"]["issuer_url"]
    add_fic(azure_clients, issuer, subject="system:serviceaccount:team-a:other-sa")

    with pytest.raises(ClientAuthenticationError) as caught:
        exchange(emulator, federation["identity"].client_id, federation["token"])

    message = str(caught.value)
    assert (
        "AADSTS70021: No matching federated identity record found for presented assertion."
        in message
    )
    assert f"Assertion Issuer: '{issuer}'." in message
    assert f"Assertion Subject: '{SUBJECT}'." in message
    assert f"Assertion Audience: '{EXCHANGE_AUDIENCE}'." in message


def test_the_error_body_has_the_entra_shape(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    add_fic(azure_clients, federation["cluster"]["issuer_url"].rstrip("/"))

    status, body = token_error(emulator, federation)

    assert status == 401
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [700211]
    assert body["error_uri"] == "https://login.microsoftonline.com/error?code=700211"
    assert body["error_description"].startswith("AADSTS700211: ")
    assert "\r\nTrace ID: " in body["error_description"]
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)


def test_an_unknown_client_id_is_aadsts700016(
    emulator: Emulator, federation: dict[str, Any]
) -> None:
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        exchange(emulator, "00000000-0000-0000-0000-0000000000aa", federation["token"])


def test_an_expired_assertion_is_aadsts700024(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    cluster = federation["cluster"]
    add_fic(azure_clients, cluster["issuer_url"])
    expired = emulator.control(
        "POST",
        f"clusters/{cluster['id']}/token",
        {
            "namespace": NS,
            "service_account": SA,
            "lifetime_seconds": 600,
            "issued_at_offset_seconds": -3600,
        },
    )["token"]
    with pytest.raises(ClientAuthenticationError, match="AADSTS700024"):
        exchange(emulator, federation["identity"].client_id, expired)


def test_a_forged_signature_is_aadsts700027(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    add_fic(azure_clients, federation["cluster"]["issuer_url"])
    claims = jwt.decode(federation["token"], options={"verify_signature": False})
    forged = jwt.encode(
        claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256"
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        exchange(emulator, federation["identity"].client_id, forged)


def test_a_new_credential_is_not_usable_until_it_propagates(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    emulator.config(fic_propagation_seconds=120)
    add_fic(azure_clients, federation["cluster"]["issuer_url"])
    # Invisible to Entra until it propagates: answered as if it did not exist.
    with pytest.raises(ClientAuthenticationError, match="AADSTS700211"):
        exchange(emulator, federation["identity"].client_id, federation["token"])
    emulator.config(fic_propagation_seconds=0)
    assert exchange(emulator, federation["identity"].client_id, federation["token"]).token


def test_a_cluster_without_oidc_issues_tokens_entra_cannot_match(
    emulator: Emulator, azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    cluster = emulator.register_cluster(name="aks-plain", oidc_issuer_enabled=False)
    identity = make_identity("id-workload")
    add_fic(azure_clients, "https://kubernetes.default.svc.cluster.local")
    token = emulator.control(
        "POST", f"clusters/{cluster['id']}/token", {"namespace": NS, "service_account": SA}
    )["token"]
    with pytest.raises(ClientAuthenticationError, match="AADSTS90061"):
        exchange(emulator, identity.client_id, token)


def test_the_request_log_never_holds_secrets_or_tokens(
    emulator: Emulator, azure_clients: AzureClients, federation: dict[str, Any]
) -> None:
    add_fic(azure_clients, federation["cluster"]["issuer_url"])
    access = exchange(emulator, federation["identity"].client_id, federation["token"])
    arm_token = azure_clients.credential.get_token(ARM_SCOPE).token

    log = (emulator.state_dir / "requests.jsonl").read_text()

    assert log
    for secret in (
        emulator.portal_client["client_secret"],
        federation["token"],
        access.token,
        arm_token,
        federation["cluster"]["token"],
    ):
        assert secret not in log
    assert "Bearer" not in log
