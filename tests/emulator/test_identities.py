"""User-assigned managed identities through the real azure-mgmt-msi client (AZURE-FACTS §1.1)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.msi.models import Identity, IdentityUpdate

from tests.emulator.conftest import (
    RG,
    IdentityFactory,
    RawArm,
    arm_error,
    identity_path,
    with_status,
)
from tests.support.emulator import AzureClients, Emulator


def test_create_answers_201_then_200_with_generated_ids_and_the_emulator_tenant(
    emulator: Emulator, azure_clients: AzureClients
) -> None:
    uamis = azure_clients.msi.user_assigned_identities
    status, created = uamis.create_or_update(
        RG, "id-orders", Identity(location="East US", tags={"team": "a"}), cls=with_status
    )
    again_status, again = uamis.create_or_update(
        RG, "id-orders", Identity(location="eastus", tags={"team": "b"}), cls=with_status
    )

    assert (status, again_status) == (201, 200)
    assert created.id == (
        f"/subscriptions/{azure_clients.subscription_id}/resourcegroups/{RG}/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/id-orders"
    )
    assert created.location == "eastus"
    assert created.tenant_id == emulator.tenant_id
    assert created.client_id and created.principal_id and created.client_id != created.principal_id
    assert (again.client_id, again.principal_id) == (created.client_id, created.principal_id)
    assert again.tags == {"team": "b"}
    assert created.isolation_scope == "None"


def test_get_is_case_insensitive_and_a_missing_identity_is_resource_not_found(
    azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    made = make_identity("id-case")
    fetched = azure_clients.msi.user_assigned_identities.get(RG.upper(), "ID-CASE")
    assert fetched.client_id == made.client_id

    with pytest.raises(ResourceNotFoundError) as caught:
        azure_clients.msi.user_assigned_identities.get(RG, "id-missing")
    assert arm_error(caught.value).code == "ResourceNotFound"


@pytest.mark.parametrize("name", ["ab", "-abc", "a.bc", "a" * 129])
def test_invalid_names_are_refused(azure_clients: AzureClients, name: str) -> None:
    with pytest.raises(HttpResponseError) as caught:
        azure_clients.msi.user_assigned_identities.create_or_update(
            RG, name, Identity(location="eastus")
        )
    assert caught.value.status_code == 400
    assert arm_error(caught.value).code == "InvalidResourceName"


def test_names_at_the_limits_are_accepted(make_identity: IdentityFactory) -> None:
    assert make_identity("abc").name == "abc"
    assert make_identity("a_" + "b" * 126).name == "a_" + "b" * 126


def test_location_is_required(
    emulator: Emulator, raw_arm: RawArm, azure_clients: AzureClients
) -> None:
    response = raw_arm(
        "PUT", identity_path(azure_clients.subscription_id, "id-x"), json={"tags": {}}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "LocationRequired"
    assert response.headers["x-ms-request-id"]


def test_patch_replaces_tags(azure_clients: AzureClients, make_identity: IdentityFactory) -> None:
    make_identity("id-tags")
    updated = azure_clients.msi.user_assigned_identities.update(
        RG, "id-tags", IdentityUpdate(tags={"owner": "team-a"})
    )
    assert updated.tags == {"owner": "team-a"}


def test_delete_answers_200_when_it_existed_and_204_when_not(
    azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    make_identity("id-gone")
    uamis = azure_clients.msi.user_assigned_identities
    first = uamis.delete(RG, "id-gone", cls=with_status)
    second = uamis.delete(RG, "id-gone", cls=with_status)
    assert (first[0], second[0]) == (200, 204)


def test_lists_page_with_absolute_next_links_through_the_sdk_pager(
    emulator: Emulator, azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    emulator.config(page_size=2)
    names = [f"id-page-{n}" for n in range(5)]
    for name in names:
        make_identity(name)
    make_identity("id-elsewhere", rg="rg-other")

    in_group = [
        i.name for i in azure_clients.msi.user_assigned_identities.list_by_resource_group(RG)
    ]
    everywhere = [i.name for i in azure_clients.msi.user_assigned_identities.list_by_subscription()]

    assert sorted(in_group) == names
    assert sorted(everywhere) == sorted([*names, "id-elsewhere"])
    lists = [e for e in emulator.requests() if e["op"] == "uami.list"]
    assert len(lists) == 3 + 3  # 5 in the group = 3 pages; 6 in the subscription = 3 pages
    assert sum("$skiptoken=" in e["query"] for e in lists) == 4


def test_list_of_nothing_still_has_value(raw_arm: RawArm, azure_clients: AzureClients) -> None:
    path = identity_path(azure_clients.subscription_id, "x").rsplit("/", 1)[0]
    response = raw_arm("GET", path)
    assert response.json() == {"value": []}


def test_arm_requires_a_valid_bearer_token_and_an_api_version(
    emulator: Emulator, raw_arm: RawArm, azure_clients: AzureClients
) -> None:
    path = identity_path(azure_clients.subscription_id, "id-x")
    raw_arm.token = "not-a-jwt"
    refused = raw_arm("GET", path)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in refused.headers

    raw_arm.token = azure_clients.credential.get_token(
        "https://management.azure.com/.default"
    ).token
    missing_version = raw_arm("GET", path, api_version=None)
    assert missing_version.status_code == 400
    assert missing_version.json()["error"]["code"] == "MissingApiVersionParameter"


def test_a_subscription_id_that_is_not_a_guid_is_refused(emulator: Emulator) -> None:
    from tests.support.emulator import build_azure_clients

    clients = build_azure_clients(emulator, subscription_id="not-a-guid")
    with pytest.raises(HttpResponseError) as caught:
        clients.msi.user_assigned_identities.get(RG, "id-x")
    assert arm_error(caught.value).code == "InvalidSubscriptionId"
