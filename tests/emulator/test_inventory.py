"""The resource inventory, and ARM's 404s for role assignments on scopes that do not exist."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError

from tests.emulator.conftest import RG, IdentityFactory, arm_error
from tests.emulator.test_role_assignments import params
from tests.support.emulator import DEFAULT_SUBSCRIPTION, AzureClients, Emulator

GROUP = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{RG}"
UNKNOWN_SUBSCRIPTION = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def principal(make_identity: IdentityFactory) -> str:
    return str(make_identity("id-inventory").principal_id)


@pytest.mark.parametrize(
    ("scope", "code", "message"),
    [
        (
            f"/subscriptions/{UNKNOWN_SUBSCRIPTION}",
            "SubscriptionNotFound",
            f"The subscription '{UNKNOWN_SUBSCRIPTION}' could not be found.",
        ),
        (
            f"/subscriptions/{UNKNOWN_SUBSCRIPTION}/resourceGroups/{RG}"
            "/providers/Microsoft.KeyVault/vaults/kv-app",
            "SubscriptionNotFound",
            f"The subscription '{UNKNOWN_SUBSCRIPTION}' could not be found.",
        ),
        (
            f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg-nowhere",
            "ResourceGroupNotFound",
            "Resource group 'rg-nowhere' could not be found.",
        ),
        (
            f"{GROUP}/providers/Microsoft.KeyVault/vaults/kv-nowhere",
            "ResourceNotFound",
            f"The Resource 'Microsoft.KeyVault/vaults/kv-nowhere' under resource group '{RG}' "
            "was not found. For more details please go to "
            "https://aka.ms/ARMResourceNotFoundFix",
        ),
    ],
)
def test_a_role_assignment_on_a_scope_that_does_not_exist_is_404_by_level(
    azure_clients: AzureClients, principal: str, scope: str, code: str, message: str
) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        azure_clients.authorization.role_assignments.create(
            scope, str(uuid.uuid4()), params(azure_clients, principal)
        )

    assert caught.value.status_code == 404
    assert (arm_error(caught.value).code, arm_error(caught.value).message) == (code, message)


def test_registered_resources_their_children_and_arms_own_resources_are_assignable(
    emulator: Emulator, azure_clients: AzureClients, principal: str
) -> None:
    account = f"{GROUP}/providers/Microsoft.Storage/storageAccounts/stapp"
    emulator.register_resources(account)
    assignments = azure_clients.authorization.role_assignments
    for scope in (
        account,
        f"{account}/blobServices/default/containers/invoices",  # children follow their resource
        f"{GROUP}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-inventory",
        f"/subscriptions/{DEFAULT_SUBSCRIPTION}",
    ):
        assignments.create(scope, str(uuid.uuid4()), params(azure_clients, principal))


def test_the_inventory_lists_resource_graph_shaped_rows_with_their_containers(
    emulator: Emulator, make_identity: IdentityFactory
) -> None:
    sub = "22222222-3333-4444-8555-666666666666"
    vault = f"/subscriptions/{sub}/resourcegroups/rg-team/providers/Microsoft.KeyVault/vaults/kv-t"
    emulator.register_resources(vault, location="West Europe", tags={"team": "payments"})
    make_identity("id-listed")

    rows = {row["id"]: row for row in emulator.control("GET", "resources")["value"]}
    only_sub = emulator.control("GET", f"resources?subscriptionId={sub}")["value"]

    canonical = (
        f"/subscriptions/{sub}/resourceGroups/rg-team/providers/Microsoft.KeyVault/vaults/kv-t"
    )
    assert rows[canonical] == {
        "id": canonical,
        "type": "Microsoft.KeyVault/vaults",
        "name": "kv-t",
        "subscriptionId": sub,
        "resourceGroup": "rg-team",
        "location": "westeurope",
        "tags": {"team": "payments"},
    }
    assert rows[f"/subscriptions/{sub}/resourceGroups/rg-team"]["type"] == (
        "microsoft.resources/subscriptions/resourcegroups"
    )
    assert rows[f"/subscriptions/{sub}"]["type"] == "microsoft.resources/subscriptions"
    assert any(
        r["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities" for r in rows.values()
    )
    assert {row["id"] for row in only_sub} == {
        canonical,
        f"/subscriptions/{sub}/resourceGroups/rg-team",
        f"/subscriptions/{sub}",
    }


def test_a_malformed_registration_changes_nothing(emulator: Emulator) -> None:
    before = emulator.control("GET", "resources")["value"]
    response = emulator._http.post(
        f"{emulator.url}/_emulator/resources",
        json={"resources": [{"id": f"{GROUP}/providers/Microsoft.KeyVault/vaults/kv-ok"},
                            {"id": "/not/an/id"}]},
        verify=str(emulator.ca_path),
        timeout=10,
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidResource"
    assert emulator.control("GET", "resources")["value"] == before


def test_a_resource_group_deleted_out_of_band_takes_its_contents_and_answers_404_under_it(
    emulator: Emulator, azure_clients: AzureClients, principal: str
) -> None:
    """ARM's proxy answers 404 for anything under a missing resource group, a DELETE included
    (azure-resource-manager-rpc resource-api-reference.md, Delete Resource), where the provider
    itself answers a DELETE of a missing resource 204."""
    vault = f"{GROUP}/providers/Microsoft.KeyVault/vaults/kv-gone"
    emulator.register_resources(vault)
    name = str(uuid.uuid4())
    assignments = azure_clients.authorization.role_assignments
    assignments.create(vault, name, params(azure_clients, principal))
    identities = azure_clients.msi.user_assigned_identities
    assert identities.delete(RG, "never-made", cls=lambda r, *_: r.http_response.status_code) == 204

    removed = emulator.control("DELETE", f"resources?id={GROUP}")

    assert (removed["removed"]["identities"], removed["removed"]["role_assignments"]) == (1, 1)
    listed = emulator.control("GET", f"resources?resourceGroup={RG}")["value"]
    assert [row["id"] for row in listed] == []
    for call in (
        lambda: identities.get(RG, "id-inventory"),
        lambda: identities.delete(RG, "id-inventory"),
        lambda: assignments.delete(vault, name),
        lambda: assignments.create(vault, str(uuid.uuid4()), params(azure_clients, principal)),
    ):
        with pytest.raises(ResourceNotFoundError) as caught:
            call()
        assert (caught.value.status_code, arm_error(caught.value).code) == (
            404,
            "ResourceGroupNotFound",
        )
    # Made again, it exists again, empty.
    emulator.register_resources(GROUP)
    status = identities.delete(RG, "id-inventory", cls=lambda r, *_: r.http_response.status_code)
    assert status == 204
    assert list(identities.list_by_resource_group(RG)) == []
