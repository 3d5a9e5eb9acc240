"""Role assignments and definitions through azure-mgmt-authorization (AZURE-FACTS §1.3-§2.2)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters

from tests.emulator.conftest import RG, IdentityFactory, arm_error
from tests.support.emulator import AzureClients, Emulator

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


def role_id(clients: AzureClients, guid: str) -> str:
    return (
        f"/subscriptions/{clients.subscription_id}"
        f"/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    )


def rg_scope(clients: AzureClients, rg: str = RG) -> str:
    return f"/subscriptions/{clients.subscription_id}/resourceGroups/{rg}"


def vault_scope(clients: AzureClients) -> str:
    return f"{rg_scope(clients)}/providers/Microsoft.KeyVault/vaults/kv-app"


def params(
    clients: AzureClients,
    principal_id: str,
    guid: str = SECRETS_USER,
    principal_type: str | None = "ServicePrincipal",
) -> RoleAssignmentCreateParameters:
    return RoleAssignmentCreateParameters(
        role_definition_id=role_id(clients, guid),
        principal_id=principal_id,
        principal_type=principal_type,
    )


@pytest.fixture
def principal(make_identity: IdentityFactory) -> str:
    return str(make_identity("id-rbac").principal_id)


def status_of(pipeline_response: Any, deserialized: Any, headers: Any) -> tuple[int, Any]:
    return pipeline_response.http_response.status_code, deserialized


def test_create_201_then_the_same_again_200(azure_clients: AzureClients, principal: str) -> None:
    assignments = azure_clients.authorization.role_assignments
    name = str(uuid.uuid4())
    first = assignments.create(
        vault_scope(azure_clients), name, params(azure_clients, principal), cls=status_of
    )
    second = assignments.create(
        vault_scope(azure_clients), name, params(azure_clients, principal), cls=status_of
    )

    assert (first[0], second[0]) == (201, 200)
    created = first[1]
    assert (
        created.id
        == f"{vault_scope(azure_clients)}/providers/Microsoft.Authorization/roleAssignments/{name}"
    )
    assert created.scope == vault_scope(azure_clients)
    assert created.principal_type == "ServicePrincipal"
    assert created.created_on is not None


def test_principal_type_defaults_to_user(azure_clients: AzureClients, principal: str) -> None:
    created = azure_clients.authorization.role_assignments.create(
        vault_scope(azure_clients),
        str(uuid.uuid4()),
        params(azure_clients, principal, principal_type=None),
    )
    assert created.principal_type == "User"


def test_delete_answers_200_with_the_body_then_204(
    azure_clients: AzureClients, principal: str
) -> None:
    assignments = azure_clients.authorization.role_assignments
    name = str(uuid.uuid4())
    assignments.create(vault_scope(azure_clients), name, params(azure_clients, principal))
    first = assignments.delete(vault_scope(azure_clients), name, cls=status_of)
    second = assignments.delete(vault_scope(azure_clients), name, cls=status_of)
    assert first[0] == 200 and first[1].name == name
    assert second[0] == 204
    with pytest.raises(ResourceNotFoundError) as caught:
        assignments.get(vault_scope(azure_clients), name)
    assert arm_error(caught.value).code == "RoleAssignmentNotFound"


def test_get_by_id_and_delete_by_id(azure_clients: AzureClients, principal: str) -> None:
    assignments = azure_clients.authorization.role_assignments
    created = assignments.create(
        vault_scope(azure_clients), str(uuid.uuid4()), params(azure_clients, principal)
    )
    assert assignments.get_by_id(created.id).principal_id == principal
    assert assignments.delete_by_id(created.id).id == created.id


def test_the_same_triple_under_another_name_is_role_assignment_exists(
    azure_clients: AzureClients, principal: str
) -> None:
    assignments = azure_clients.authorization.role_assignments
    existing = str(uuid.uuid4())
    assignments.create(vault_scope(azure_clients), existing, params(azure_clients, principal))
    # The tenant form of the same role definition is the same role: compared by GUID.
    tenant_form = RoleAssignmentCreateParameters(
        role_definition_id=f"/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_USER.upper()}",
        principal_id=principal,
        principal_type="ServicePrincipal",
    )
    with pytest.raises(ResourceExistsError) as caught:
        assignments.create(vault_scope(azure_clients), str(uuid.uuid4()), tenant_form)
    assert arm_error(caught.value).code == "RoleAssignmentExists"
    assert arm_error(caught.value).message == (
        "The role assignment already exists. The ID of the existing role assignment is "
        f"{existing.replace('-', '')}."
    )


def test_reusing_a_name_with_other_properties_is_update_not_permitted(
    azure_clients: AzureClients, principal: str
) -> None:
    assignments = azure_clients.authorization.role_assignments
    name = str(uuid.uuid4())
    assignments.create(vault_scope(azure_clients), name, params(azure_clients, principal))
    with pytest.raises(HttpResponseError) as caught:
        assignments.create(
            vault_scope(azure_clients), name, params(azure_clients, principal, READER)
        )
    assert caught.value.status_code == 400
    assert arm_error(caught.value).code == "RoleAssignmentUpdateNotPermitted"


def test_a_new_identity_is_principal_not_found_without_principal_type_during_replication(
    emulator: Emulator, azure_clients: AzureClients, principal: str
) -> None:
    emulator.config(principal_replication_delay_seconds=60)
    assignments = azure_clients.authorization.role_assignments
    with pytest.raises(HttpResponseError) as caught:
        assignments.create(
            vault_scope(azure_clients),
            str(uuid.uuid4()),
            params(azure_clients, principal, principal_type=None),
        )
    assert caught.value.status_code == 400
    assert arm_error(caught.value).code == "PrincipalNotFound"
    assert arm_error(caught.value).message == (
        f"Principal {principal.replace('-', '')} does not exist in the directory "
        f"{emulator.tenant_id}. Check that you have the correct principal ID. If you are creating "
        "this principal and then immediately assigning a role, this error might be related to a "
        "replication delay. In this case, set the role assignment principalType property to a "
        "value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype"
    )

    created = assignments.create(
        vault_scope(azure_clients), str(uuid.uuid4()), params(azure_clients, principal)
    )
    assert created.principal_type == "ServicePrincipal"


def test_the_delay_can_hit_even_with_principal_type(
    emulator: Emulator, azure_clients: AzureClients, principal: str
) -> None:
    emulator.config(principal_replication_delay_seconds=60, principal_not_found_even_with_type=True)
    with pytest.raises(HttpResponseError) as caught:
        azure_clients.authorization.role_assignments.create(
            vault_scope(azure_clients), str(uuid.uuid4()), params(azure_clients, principal)
        )
    assert arm_error(caught.value).code == "PrincipalNotFound"


def test_an_unknown_principal_is_principal_not_found(azure_clients: AzureClients) -> None:
    with pytest.raises(HttpResponseError) as caught:
        azure_clients.authorization.role_assignments.create(
            vault_scope(azure_clients), str(uuid.uuid4()), params(azure_clients, str(uuid.uuid4()))
        )
    assert arm_error(caught.value).code == "PrincipalNotFound"


def test_a_wrong_explicit_principal_type_is_unmatched(
    azure_clients: AzureClients, principal: str
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        azure_clients.authorization.role_assignments.create(
            vault_scope(azure_clients),
            str(uuid.uuid4()),
            params(azure_clients, principal, principal_type="User"),
        )
    assert arm_error(caught.value).code == "UnmatchedPrincipalType"


def test_names_must_be_guids_and_roles_must_exist(
    azure_clients: AzureClients, principal: str
) -> None:
    assignments = azure_clients.authorization.role_assignments
    with pytest.raises(HttpResponseError) as bad_name:
        assignments.create(
            vault_scope(azure_clients), "not-a-guid", params(azure_clients, principal)
        )
    with pytest.raises(HttpResponseError) as bad_role:
        assignments.create(
            vault_scope(azure_clients),
            str(uuid.uuid4()),
            params(azure_clients, principal, str(uuid.uuid4())),
        )
    assert arm_error(bad_name.value).code == "InvalidRoleAssignmentId"
    assert arm_error(bad_role.value).code == "RoleDefinitionDoesNotExist"


def test_list_for_scope_filters_by_principal_and_at_scope(
    emulator: Emulator, azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    mine = str(make_identity("id-mine").principal_id)
    other = str(make_identity("id-other").principal_id)
    assignments = azure_clients.authorization.role_assignments
    sub_scope = f"/subscriptions/{azure_clients.subscription_id}"
    above = assignments.create(sub_scope, str(uuid.uuid4()), params(azure_clients, mine, READER))
    at = assignments.create(rg_scope(azure_clients), str(uuid.uuid4()), params(azure_clients, mine))
    below = assignments.create(
        vault_scope(azure_clients), str(uuid.uuid4()), params(azure_clients, mine)
    )
    assignments.create(rg_scope(azure_clients), str(uuid.uuid4()), params(azure_clients, other))
    assignments.create(
        rg_scope(azure_clients, "rg-unrelated"), str(uuid.uuid4()), params(azure_clients, mine)
    )

    by_principal = assignments.list_for_scope(
        rg_scope(azure_clients), filter=f"principalId eq '{mine}'"
    )
    at_scope = assignments.list_for_scope(rg_scope(azure_clients), filter="atScope()")

    assert {a.id for a in by_principal} == {above.id, at.id, below.id}
    assert {a.principal_id for a in at_scope} == {mine, other}
    assert below.id not in {
        a.id for a in assignments.list_for_scope(rg_scope(azure_clients), filter="atScope()")
    }
    wire = [e for e in emulator.requests() if e["op"] == "ra.list"]
    assert f"$filter=principalId%20eq%20'{mine}'" in wire[0]["query"]


def test_assignments_of_a_deleted_identity_remain(
    azure_clients: AzureClients, make_identity: IdentityFactory
) -> None:
    principal = str(make_identity("id-doomed").principal_id)
    assignments = azure_clients.authorization.role_assignments
    created = assignments.create(
        vault_scope(azure_clients), str(uuid.uuid4()), params(azure_clients, principal)
    )
    azure_clients.msi.user_assigned_identities.delete(RG, "id-doomed")
    assert assignments.get_by_id(created.id).principal_id == principal


def test_role_definitions_list_with_a_role_name_filter(
    emulator: Emulator, azure_clients: AzureClients
) -> None:
    scope = f"/subscriptions/{azure_clients.subscription_id}"
    found = list(
        azure_clients.authorization.role_definitions.list(
            scope, filter="roleName eq 'Key Vault Secrets User'"
        )
    )

    assert [r.name for r in found] == [SECRETS_USER]
    role = found[0]
    assert role.id == role_id(azure_clients, SECRETS_USER)
    assert (role.role_name, role.role_type, role.assignable_scopes) == (
        "Key Vault Secrets User",
        "BuiltInRole",
        ["/"],
    )
    wire = [e for e in emulator.requests() if e["op"] == "rd.list"]
    assert "roleName%20eq%20%27Key%20Vault%20Secrets%20User%27" in wire[0]["query"]
    assert len(list(azure_clients.authorization.role_definitions.list(scope))) >= 31


def test_role_definitions_get_in_tenant_and_subscription_form(azure_clients: AzureClients) -> None:
    definitions = azure_clients.authorization.role_definitions
    tenant = definitions.get("", READER)
    by_id = definitions.get_by_id(role_id(azure_clients, READER))
    assert tenant.id == f"/providers/Microsoft.Authorization/roleDefinitions/{READER}"
    assert by_id.id == role_id(azure_clients, READER)
    owner = definitions.get("", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635")
    rbac_admin = definitions.get("", "f58310d9-a9f6-439a-9e8d-f62e7b41a168")
    assert owner.permissions[0].actions == ["*"]
    assert "Microsoft.Authorization/roleAssignments/write" in rbac_admin.permissions[0].actions
    with pytest.raises(ResourceNotFoundError):
        definitions.get("", str(uuid.uuid4()))


def test_filtered_lists_follow_next_links(
    emulator: Emulator, azure_clients: AzureClients, principal: str
) -> None:
    emulator.config(page_size=2)
    assignments = azure_clients.authorization.role_assignments
    for guid in (READER, SECRETS_USER, "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"):
        assignments.create(
            vault_scope(azure_clients), str(uuid.uuid4()), params(azure_clients, principal, guid)
        )

    listed = list(
        assignments.list_for_scope(rg_scope(azure_clients), filter=f"principalId eq '{principal}'")
    )

    assert len(listed) == 3
    pages = [e for e in emulator.requests() if e["op"] == "ra.list"]
    assert len(pages) == 2 and "$skipToken=2" in pages[1]["query"]
