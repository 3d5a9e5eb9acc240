"""The Azure emulator (``python -m azure_emulator``) as a pytest fixture, plus SDK clients.

Fixtures:

- ``emulator_process`` (session): one emulator process on a free port with a temporary state
  directory, stopped at the end of the session.
- ``emulator`` (function): the same process with every resource dropped, the knobs back at
  their start values and an empty request log, so each test starts clean.
- ``azure_clients`` (function): real azure-mgmt clients authenticated as the portal's own
  service principal through ``ClientSecretCredential``, all over HTTPS to the emulator.

``start_emulator()`` starts a private process for tests that restart or kill it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from tests.support.log_capture import register_secret
from tests.support.services import ManagedProcess, python_executable, wait_until

DEFAULT_SUBSCRIPTION = "7a6b9e0c-1d2e-4f30-9a1b-2c3d4e5f6a7b"
ARM_SCOPE = "https://management.azure.com/.default"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


class EmulatorControlError(RuntimeError):
    """A control API call answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"emulator control API answered {status}: {body}")
        self.status, self.body = status, body


@dataclass
class Emulator:
    """A running emulator process and how to reach it."""

    process: ManagedProcess
    state_dir: Path
    url: str = ""
    port: int = 0
    portal_client: dict[str, str] = field(default_factory=dict)
    _http: requests.Session = field(default_factory=requests.Session, repr=False)

    @property
    def ca_path(self) -> Path:
        return self.state_dir / "ca.pem"

    @property
    def tenant_id(self) -> str:
        return self.portal_client["tenant_id"]

    def wait_ready(self, timeout: float = 30) -> None:
        url_file = self.state_dir / "url"
        ready = wait_until(
            lambda: url_file.exists() or not self.process.alive(), timeout=timeout, interval=0.05
        )
        if not ready or not url_file.exists():
            raise RuntimeError(f"emulator did not start:\n{self.process.log_tail()}")
        self.url = url_file.read_text().strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        self.portal_client = json.loads((self.state_dir / "portal-client.json").read_text())
        register_secret(self.portal_client["client_secret"], "the emulator's client secret")

    def control(self, method: str, path: str, json: Any = None) -> Any:
        """Call ``/_emulator/<path>``; the parsed JSON answer, or EmulatorControlError."""
        # verify is passed per call: a session-level one loses to REQUESTS_CA_BUNDLE.
        response = self._http.request(
            method,
            f"{self.url}/_emulator/{path.lstrip('/')}",
            json=json,
            timeout=30,
            verify=str(self.ca_path),
        )
        if response.status_code >= 400:
            raise EmulatorControlError(response.status_code, response.text)
        return response.json() if response.content else None

    def config(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs (``PATCH /_emulator/config``); returns the whole configuration."""
        result: dict[str, Any] = self.control("PATCH", "config", knobs)
        return result

    def reset(self) -> None:
        """Drop all resources, restore the start knobs and truncate the request log."""
        self.control("POST", "reset", {"config": True, "requests": True})

    def register_cluster(
        self,
        *,
        subscription_id: str = DEFAULT_SUBSCRIPTION,
        resource_group: str = "rg-aks",
        name: str = "aks-sandbox",
        location: str = "eastus",
        oidc_issuer_enabled: bool = True,
        workload_identity_enabled: bool = True,
    ) -> dict[str, Any]:
        """Register a sandbox cluster: its id, resource_id, issuer_url, k8s_api_url and token."""
        cluster: dict[str, Any] = self.control(
            "POST",
            "clusters",
            {
                "subscription_id": subscription_id,
                "resource_group": resource_group,
                "name": name,
                "location": location,
                "oidc_issuer_enabled": oidc_issuer_enabled,
                "workload_identity_enabled": workload_identity_enabled,
            },
        )
        register_secret(cluster["token"], "a sandbox cluster's API token")
        return cluster

    def register_resources(
        self, *resource_ids: str, location: str = "eastus", tags: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Add resources (and the subscriptions and resource groups they imply) to the
        inventory: ARM answers 404 to a role assignment on a scope that does not exist."""
        body = {
            "resources": [
                {"id": resource_id, "location": location, "tags": tags or {}}
                for resource_id in resource_ids
            ]
        }
        registered: list[dict[str, Any]] = self.control("POST", "resources", body)["value"]
        return registered

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """The request log entries from line ``since`` on."""
        entries: list[dict[str, Any]] = self.control("GET", f"requests?since={since}")["requests"]
        return entries

    def credential(self) -> ClientSecretCredential:
        """The portal's own credential, exactly as the portal builds it in emulator mode."""
        return portal_credential(self)

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        """Stop and start again on the same port and state directory."""
        self.process.stop()
        self.process.args = _args(self.state_dir, self.port)
        self.process.start()
        self.wait_ready()


def _args(state_dir: Path, port: int) -> list[str]:
    return [
        python_executable(),
        "-m",
        "azure_emulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
    ]


def start_emulator(
    state_dir: Path, log_path: Path, *, env: dict[str, str] | None = None
) -> Emulator:
    """Start an emulator process on a free port and wait until it is ready."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EMULATOR_"))}
    # Every change the tests make is checked to be in the state's journal (azure_emulator.state).
    child_env["EMULATOR_VERIFY_JOURNAL"] = "1"
    child_env.update(env or {})
    process = ManagedProcess("emulator", _args(state_dir, 0), child_env, log_path)
    (state_dir / "url").unlink(missing_ok=True)
    emulator = Emulator(process=process.start(), state_dir=state_dir)
    try:
        emulator.wait_ready()
    except Exception:
        process.stop()
        raise
    return emulator


def portal_credential(emulator: Emulator) -> ClientSecretCredential:
    """ClientSecretCredential against the emulator: custom authority, no instance discovery."""
    client = emulator.portal_client
    return ClientSecretCredential(
        client["tenant_id"],
        client["client_id"],
        client["client_secret"],
        authority=emulator.url,
        disable_instance_discovery=True,
        connection_verify=str(emulator.ca_path),
    )


@dataclass
class AzureClients:
    """The three azure-mgmt clients the portal uses, pointed at the emulator."""

    credential: ClientSecretCredential
    subscription_id: str
    msi: ManagedServiceIdentityClient
    authorization: AuthorizationManagementClient
    containerservice: ContainerServiceClient


def build_azure_clients(
    emulator: Emulator, subscription_id: str = DEFAULT_SUBSCRIPTION, **client_kwargs: Any
) -> AzureClients:
    """Real SDK clients with ``base_url`` = the emulator and its CA trusted.

    ``client_kwargs`` go to every client constructor (e.g. ``retry_total=0``).
    """
    credential = portal_credential(emulator)
    common: dict[str, Any] = {
        "base_url": emulator.url,
        "connection_verify": str(emulator.ca_path),
        **client_kwargs,
    }
    return AzureClients(
        credential=credential,
        subscription_id=subscription_id,
        msi=ManagedServiceIdentityClient(credential, subscription_id, **common),
        authorization=AuthorizationManagementClient(credential, subscription_id, **common),
        containerservice=ContainerServiceClient(credential, subscription_id, **common),
    )


def kube_api_client(emulator: Emulator, cluster: dict[str, Any]) -> Any:
    """A kubernetes ``ApiClient`` for a sandbox cluster (host, bearer token, the emulator CA)."""
    from kubernetes import client

    configuration = client.Configuration(
        host=cluster["k8s_api_url"],
        api_key={"BearerToken": cluster["token"]},
        api_key_prefix={"BearerToken": "Bearer"},
        ssl_ca_cert=str(emulator.ca_path),
    )
    return client.ApiClient(configuration)


@pytest.fixture(scope="session")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    base = tmp_path_factory.mktemp("emulator")
    emulator = start_emulator(base / "state", base / "emulator.log")
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    if not emulator_process.process.alive():
        emulator_process.restart()
    emulator_process.reset()
    return emulator_process


@pytest.fixture
def azure_clients(emulator: Emulator) -> AzureClients:
    return build_azure_clients(emulator)
