"""Helpers for the emulator's own tests: raw HTTPS calls and status-capturing SDK callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ODataV4Format

from tests.support.emulator import ARM_SCOPE, DEFAULT_SUBSCRIPTION, AzureClients, Emulator

MSI_API = "2024-11-30"
AUTH_API = "2022-04-01"
RG = "rg-app"


def arm_error(exc: HttpResponseError) -> ODataV4Format:
    """The ARM error body the SDK parsed from a failed call (code, message)."""
    assert exc.error is not None, f"no ARM error body in {exc!r}"
    return exc.error


def with_status(pipeline_response: Any, deserialized: Any, headers: Any) -> tuple[int, Any]:
    """``cls=`` callback for SDK operations: keep the HTTP status next to the result."""
    return pipeline_response.http_response.status_code, deserialized


@dataclass
class RawArm:
    """Plain HTTPS calls to the emulator's ARM surface with a real portal token.

    For wire-shape assertions the SDK hides (raw bodies, headers, missing fields).
    """

    emulator: Emulator
    token: str

    def __call__(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        api_version: str | None = MSI_API,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        query = dict(params or {})
        if api_version is not None:
            query["api-version"] = api_version
        return requests.request(
            method,
            f"{self.emulator.url}{path}",
            json=json,
            params=query,
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
            verify=str(self.emulator.ca_path),
            timeout=30,
        )


@pytest.fixture(autouse=True)
def inventory(emulator: Emulator) -> None:
    """The subscription, resource groups and key vault the emulator tests assign roles on
    (ARM answers 404 to a role assignment on a scope that does not exist)."""
    group = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{RG}"
    emulator.register_resources(
        f"{group}/providers/Microsoft.KeyVault/vaults/kv-app",
        f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg-other",
        f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg-unrelated",
    )


@pytest.fixture
def raw_arm(emulator: Emulator, azure_clients: AzureClients) -> RawArm:
    return RawArm(emulator, azure_clients.credential.get_token(ARM_SCOPE).token)


def identity_path(subscription_id: str, name: str, rg: str = RG) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{rg}/providers/"
        f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )


IdentityFactory = Callable[..., Any]


@pytest.fixture
def make_identity(azure_clients: AzureClients) -> IdentityFactory:
    """Create a UAMI through the SDK and return the SDK model."""
    from azure.mgmt.msi.models import Identity

    def make(name: str = "id-app", rg: str = RG, location: str = "eastus") -> Any:
        return azure_clients.msi.user_assigned_identities.create_or_update(
            rg, name, Identity(location=location)
        )

    return make
