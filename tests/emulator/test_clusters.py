"""Sandbox clusters: AKS through azure-mgmt-containerservice, the OIDC issuer, and the Kubernetes
API through the pydantic-based kubernetes 37 client (AZURE-FACTS §1.5, §6.1)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from kubernetes import client
from kubernetes import config as kube_config

from tests.support.emulator import EXCHANGE_AUDIENCE, AzureClients, Emulator, kube_api_client

NS, SA = "team-a", "workload-sa"


@pytest.fixture
def cluster(emulator: Emulator) -> dict[str, Any]:
    return emulator.register_cluster()


@pytest.fixture
def core(emulator: Emulator, cluster: dict[str, Any]) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api_client(emulator, cluster))


def service_account(
    annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": SA, "namespace": NS}
    if annotations is not None:
        metadata["annotations"] = annotations
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}


def apply(
    core: client.CoreV1Api, body: dict[str, Any], manager: str = "wi-portal", force: bool = True
) -> Any:
    return core.patch_namespaced_service_account(
        SA,
        NS,
        body,
        field_manager=manager,
        force=force,
        _content_type="application/apply-patch+yaml",
    )


def test_registration_is_idempotent_and_the_issuer_has_a_trailing_slash(
    emulator: Emulator, cluster: dict[str, Any]
) -> None:
    again = emulator.register_cluster()
    assert again["id"] == cluster["id"]
    assert cluster["issuer_url"] == f"{emulator.url}/oidc/{cluster['id']}/"
    assert cluster["k8s_api_url"] == f"{emulator.url}/k8s/{cluster['id']}"


def test_managed_cluster_get_exposes_issuer_url_and_workload_identity(
    emulator: Emulator, azure_clients: AzureClients, cluster: dict[str, Any]
) -> None:
    managed = azure_clients.containerservice.managed_clusters.get("rg-aks", "aks-sandbox")

    assert managed.properties.oidc_issuer_profile.issuer_url == cluster["issuer_url"]
    assert managed.properties.oidc_issuer_profile.enabled is True
    assert managed.properties.security_profile.workload_identity.enabled is True
    assert managed.id.lower() == cluster["resource_id"].lower()


def test_a_cluster_without_the_oidc_issuer_has_no_issuer_url(
    emulator: Emulator, azure_clients: AzureClients
) -> None:
    emulator.register_cluster(
        name="aks-plain", oidc_issuer_enabled=False, workload_identity_enabled=False
    )
    managed = azure_clients.containerservice.managed_clusters.get("rg-aks", "aks-plain")
    assert managed.properties.oidc_issuer_profile.enabled is False
    assert managed.properties.oidc_issuer_profile.issuer_url is None
    assert managed.properties.security_profile.workload_identity.enabled is False


def test_an_unknown_cluster_is_resource_not_found(
    emulator: Emulator, azure_clients: AzureClients
) -> None:
    with pytest.raises(ResourceNotFoundError):
        azure_clients.containerservice.managed_clusters.get("rg-aks", "aks-missing")


def test_user_credentials_give_a_kubeconfig_that_reaches_the_cluster_api(
    emulator: Emulator, azure_clients: AzureClients, cluster: dict[str, Any]
) -> None:
    result = azure_clients.containerservice.managed_clusters.list_cluster_user_credentials(
        "rg-aks", "aks-sandbox"
    )

    assert result.kubeconfigs[0].name == "clusterUser"
    kubeconfig = json.loads(result.kubeconfigs[0].value)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == cluster["k8s_api_url"]
    configuration = client.Configuration()
    kube_config.load_kube_config_from_dict(kubeconfig, client_configuration=configuration)
    version = client.VersionApi(client.ApiClient(configuration)).get_code()
    assert version.git_version.startswith("v1.")


def test_the_issuer_documents_are_public_and_match_the_cluster(
    emulator: Emulator, cluster: dict[str, Any]
) -> None:
    issuer = cluster["issuer_url"]
    discovery = requests.get(
        f"{issuer}.well-known/openid-configuration", verify=str(emulator.ca_path), timeout=10
    )
    jwks = requests.get(discovery.json()["jwks_uri"], verify=str(emulator.ca_path), timeout=10)

    assert discovery.json()["issuer"] == issuer
    assert discovery.json()["jwks_uri"] == f"{issuer}openid/v1/jwks"
    assert jwks.json()["keys"][0]["alg"] == "RS256"


def test_the_api_serves_discovery_to_the_kubernetes_client(
    emulator: Emulator, cluster: dict[str, Any]
) -> None:
    api = kube_api_client(emulator, cluster)
    # 37.0.2 returns str(dict) for these (AZURE-FACTS §6.1), so read the raw response.
    discovery = client.WellKnownApi(api).get_service_account_issuer_open_id_configuration(
        _preload_content=False
    )
    keyset = client.OpenidApi(api).get_service_account_issuer_open_id_keyset(_preload_content=False)
    assert json.loads(discovery.data)["issuer"] == cluster["issuer_url"]
    assert json.loads(keyset.data)["keys"]


def test_the_api_refuses_a_wrong_token(emulator: Emulator, cluster: dict[str, Any]) -> None:
    core = client.CoreV1Api(kube_api_client(emulator, {**cluster, "token": "wrong"}))
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_service_account(SA, NS)
    assert caught.value.status == 401
    assert json.loads(caught.value.body)["kind"] == "Status"


def test_server_side_apply_creates_updates_and_removes_fields(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_service_account(SA, NS)
    assert missing.value.status == 404

    created = apply(
        core, service_account({"azure.workload.identity/client-id": "abc", "extra": "x"})
    )
    updated = apply(core, service_account({"azure.workload.identity/client-id": "def"}))
    fetched = core.read_namespaced_service_account(SA, NS)

    assert created.metadata.annotations == {
        "azure.workload.identity/client-id": "abc",
        "extra": "x",
    }
    assert updated.metadata.annotations == {"azure.workload.identity/client-id": "def"}
    assert fetched.metadata.uid == created.metadata.uid
    assert int(fetched.metadata.resource_version) > int(created.metadata.resource_version)
    assert [m.manager for m in fetched.metadata.managed_fields] == ["wi-portal"]


def test_apply_conflicts_with_another_manager_unless_forced(core: client.CoreV1Api) -> None:
    apply(core, service_account(labels={"team": "a"}), manager="someone-else")
    with pytest.raises(client.ApiException) as caught:
        apply(core, service_account(labels={"team": "b"}), force=False)
    assert caught.value.status == 409
    assert 'conflict with "someone-else"' in json.loads(caught.value.body)["message"]
    assert apply(core, service_account(labels={"team": "b"})).metadata.labels == {"team": "b"}


def test_apply_requires_a_field_manager_and_a_valid_name(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as no_manager:
        core.patch_namespaced_service_account(
            SA, NS, service_account(), _content_type="application/apply-patch+yaml"
        )
    assert no_manager.value.status == 400
    bad = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "Bad_Name"}}
    with pytest.raises(client.ApiException) as invalid:
        core.patch_namespaced_service_account(
            "Bad_Name",
            NS,
            bad,
            field_manager="wi-portal",
            _content_type="application/apply-patch+yaml",
        )
    assert invalid.value.status == 422


def test_delete_returns_the_object_then_404(core: client.CoreV1Api) -> None:
    apply(core, service_account())
    assert core.delete_namespaced_service_account(SA, NS).metadata.name == SA
    with pytest.raises(client.ApiException) as caught:
        core.delete_namespaced_service_account(SA, NS)
    assert caught.value.status == 404


def test_token_request_issues_a_signed_token_for_the_service_account(
    emulator: Emulator, cluster: dict[str, Any], core: client.CoreV1Api
) -> None:
    apply(core, service_account())
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[EXCHANGE_AUDIENCE], expiration_seconds=3600)
    )
    issued = core.create_namespaced_service_account_token(SA, NS, request)

    jwks = requests.get(
        f"{cluster['issuer_url']}openid/v1/jwks", verify=str(emulator.ca_path), timeout=10
    ).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(issued.status.token, key, algorithms=["RS256"], audience=EXCHANGE_AUDIENCE)
    assert claims["iss"] == cluster["issuer_url"]
    assert claims["sub"] == f"system:serviceaccount:{NS}:{SA}"
    assert claims["kubernetes.io"]["namespace"] == NS
    assert claims["exp"] - claims["iat"] == 3600
    expires = issued.status.expiration_timestamp
    assert expires.tzinfo is not None
    assert abs((expires - dt.datetime.now(dt.UTC)).total_seconds() - 3600) < 60
    wire = [e for e in emulator.requests() if e["op"] == "k8s.token"]
    assert wire[0]["status"] == 201


def test_token_request_refuses_short_lifetimes_and_missing_accounts(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as missing:
        core.create_namespaced_service_account_token(
            SA, NS, {"spec": {"audiences": [EXCHANGE_AUDIENCE]}}
        )
    assert missing.value.status == 404

    apply(core, service_account())
    with pytest.raises(client.ApiException) as short:
        core.create_namespaced_service_account_token(
            SA, NS, {"spec": {"audiences": [EXCHANGE_AUDIENCE], "expirationSeconds": 599}}
        )
    assert short.value.status == 422
    assert (
        "may not specify a duration less than 10 minutes" in json.loads(short.value.body)["message"]
    )


def test_api_urls_follow_the_host_the_caller_used(
    emulator: Emulator, cluster: dict[str, Any]
) -> None:
    via_localhost = emulator.url.replace("127.0.0.1", "localhost")
    seen = requests.get(
        f"{via_localhost}/_emulator/clusters/{cluster['id']}",
        verify=str(emulator.ca_path),
        timeout=10,
    ).json()
    assert seen["k8s_api_url"] == f"{via_localhost}/k8s/{cluster['id']}"
    # The issuer is an identity, not a location: it never changes.
    assert seen["issuer_url"] == cluster["issuer_url"]
