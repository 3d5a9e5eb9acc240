"""Sovereign clouds and private authorities: the portal in `azure` mode pointed at the emulator
with another cloud's settings, through DefaultAzureCredential and the real SDK clients.

The emulator accepts only that cloud's ARM token audience (knob `cloud`) and logs the scope of
every token request, so a scope still hard-coded to the public cloud shows (a 401 at ARM and
the wrong scope in the log). Its authority is a host MSAL does not know: without instance
discovery turned off, MSAL would ask login.microsoftonline.com about it before any token request.
"""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import IdentityRequest
from provisioning.azure import get_gateway
from provisioning.clouds import AKS_AAD_SERVER_APP_ID, resolve_cloud
from provisioning.kubernetes import aks_server_app_id
from provisioning.models import VerificationOutcome
from provisioning.reconcile import reconcile_request
from provisioning.verification import identity_request_verify
from tests.support.emulator import Emulator
from tests.support.people import SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import run_manage

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLOUD_SCOPES = {
    "china": "https://management.chinacloudapi.cn/.default",
    "usgov": "https://management.core.usgovcloudapi.net/.default",
}


def point_the_portal_at(
    emulator: Emulator,
    cloud_name: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    arm_scope: str = "",
) -> None:
    """`AZURE_MODE=azure` with `cloud_name`'s settings, ARM and Entra served by the emulator, and
    the portal's service principal in the azure-identity environment variables."""
    cloud = resolve_cloud(
        cloud_name, arm_endpoint=emulator.url, authority_host=emulator.url, arm_scope=arm_scope
    )
    settings.AZURE_MODE = "azure"
    settings.AZURE_CLOUD = cloud.name
    settings.AZURE_RESOURCE_MANAGER_URL = cloud.arm_endpoint
    settings.AZURE_AUTHORITY_HOST = cloud.authority_host
    settings.AZURE_RESOURCE_MANAGER_SCOPE = cloud.arm_scope
    settings.AZURE_INSTANCE_DISCOVERY = cloud.instance_discovery
    settings.AZURE_CA_BUNDLE = str(emulator.ca_path)
    client = emulator.portal_client
    monkeypatch.setenv("AZURE_TENANT_ID", client["tenant_id"])
    monkeypatch.setenv("AZURE_CLIENT_ID", client["client_id"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", client["client_secret"])
    for name in ("AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)


def token_scopes(emulator: Emulator) -> dict[str, set[str]]:
    """The scopes of the token requests the emulator answered. A request an earlier test's
    timeout fault held is logged when the emulator drops it, maybe after the reset, with no
    status: not this test's."""
    scopes: dict[str, set[str]] = {}
    for entry in emulator.requests():
        if entry["op"].startswith("entra.token") and entry["status"] is not None:
            scopes.setdefault(entry["op"], set()).add(entry.get("scope", ""))
    return scopes


@pytest.mark.parametrize("cloud_name", ["china", "usgov"])
def test_a_sovereign_cloud_gets_its_own_scopes_for_arm_and_the_exchange(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    cloud_name: str,
) -> None:
    sandbox.emulator.config(cloud=cloud_name)
    point_the_portal_at(sandbox.emulator, cloud_name, settings, monkeypatch)
    identity_request = approved_request()

    reconcile_request(identity_request.pk)
    identity_request = IdentityRequest.objects.get(pk=identity_request.pk)
    assert identity_request.status == "ready", identity_request.last_error
    verification = identity_request_verify(identity_request_id=identity_request.pk)

    assert verification is not None
    assert verification.outcome == VerificationOutcome.WORKS, verification.summary
    scopes = token_scopes(sandbox.emulator)
    assert scopes["entra.token.secret"] == {CLOUD_SCOPES[cloud_name]}  # every ARM client
    assert scopes["entra.token.assertion"] == {CLOUD_SCOPES[cloud_name]}  # the exchange


def test_in_emulator_mode_the_arm_clients_and_the_exchange_ask_for_the_configured_scope(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, settings: Any
) -> None:
    """The same through the emulator-mode credential (instance discovery already off there):
    only the scope differs from the public cloud, and ARM refuses the public one."""
    sandbox.emulator.config(cloud="china")
    settings.AZURE_RESOURCE_MANAGER_SCOPE = CLOUD_SCOPES["china"]
    identity_request = approved_request()

    reconcile_request(identity_request.pk)
    identity_request = IdentityRequest.objects.get(pk=identity_request.pk)

    assert identity_request.status == "ready", identity_request.last_error
    verification = identity_request_verify(identity_request_id=identity_request.pk)
    assert verification is not None
    assert verification.outcome == VerificationOutcome.WORKS, verification.summary
    assert token_scopes(sandbox.emulator)["entra.token.assertion"] == {CLOUD_SCOPES["china"]}


def test_a_private_authority_works_without_instance_discovery(
    sandbox: Sandbox, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A custom cloud (Azure Stack Hub, a private cloud, a stand-in): its authority host is
    unknown to MSAL, so instance discovery is off by default and the first call succeeds."""
    # The emulator's ARM takes the public cloud's audience; a custom cloud names its own scope.
    scope = "https://management.azure.com/.default"
    point_the_portal_at(sandbox.emulator, "custom", settings, monkeypatch, arm_scope=scope)
    assert settings.AZURE_INSTANCE_DISCOVERY is False

    cluster = get_gateway().get_cluster(
        subscription_id=SUBSCRIPTION, resource_group="rg-aks", name=sandbox.cluster.name
    )

    assert cluster.issuer_url == sandbox.aks["issuer_url"]
    assert token_scopes(sandbox.emulator)["entra.token.secret"] == {scope}


def test_instance_discovery_is_on_for_the_known_clouds_and_can_be_forced() -> None:
    assert resolve_cloud("public").instance_discovery is True
    assert resolve_cloud("china").instance_discovery is True
    assert (
        resolve_cloud("public", authority_host="https://login.example.test").instance_discovery
        is False
    )
    assert (
        resolve_cloud(
            "custom",
            arm_endpoint="https://management.local.azurestack.external",
            authority_host="https://adfs.local.azurestack.external",
            instance_discovery="on",
        ).instance_discovery
        is True
    )


def test_azure_cloud_fills_the_endpoint_authority_and_scope_and_each_stays_overridable() -> None:
    script = (
        "from django.conf import settings as s; print(s.AZURE_RESOURCE_MANAGER_URL, "
        "s.AZURE_AUTHORITY_HOST, s.AZURE_RESOURCE_MANAGER_SCOPE, s.AZURE_INSTANCE_DISCOVERY, "
        "s.ENTRA_AUTHORITY_HOST)"
    )
    china = run_manage("shell", "-c", script, DEBUG="1", AZURE_CLOUD="china")
    assert china.stdout.strip().splitlines()[-1].split() == [
        "https://management.chinacloudapi.cn",
        "https://login.chinacloudapi.cn",
        "https://management.chinacloudapi.cn/.default",
        "True",
        "https://login.chinacloudapi.cn",
    ], china.stderr
    moved = run_manage(
        "shell", "-c", script, DEBUG="1", AZURE_CLOUD="usgov",
        AZURE_AUTHORITY_HOST="https://login.proxy.example", AZURE_INSTANCE_DISCOVERY="auto",
    )  # fmt: skip
    assert moved.stdout.strip().splitlines()[-1].split()[1:4] == [
        "https://login.proxy.example",
        "https://management.core.usgovcloudapi.net/.default",
        "False",
    ], moved.stderr
    bad = run_manage("check", DEBUG="1", AZURE_CLOUD="mars")
    assert "AZURE_CLOUD must be one of public, usgov, china or custom" in bad.stderr


def test_the_aks_server_app_comes_from_the_kubeconfig_where_it_differs() -> None:
    kubelogin = {"command": "kubelogin", "args": ["get-token", "--server-id", "abc-123"]}
    assert aks_server_app_id(kubelogin) == "abc-123"
    assert aks_server_app_id({"args": ["get-token", "--server-id=def-456"]}) == "def-456"
    assert aks_server_app_id({"command": "kubelogin"}) == AKS_AAD_SERVER_APP_ID
