"""The curated catalog of Azure built-in roles teams may ask for (AZURE-FACTS.md §5).

`catalog_ensure()` takes the model class so the data migration can pass its historical model;
seed_demo and the test fixtures call it with the real one. It only adds and updates entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    guid: str
    description: str
    resource_types: tuple[str, ...]  # empty: meaningful on any resource
    privileged: bool = False
    # Grants Microsoft.Authorization/roleAssignments/write: the identity could grant access itself.
    can_assign_roles: bool = False


_KV = ("Microsoft.KeyVault/vaults",)
_STORAGE = ("Microsoft.Storage/storageAccounts",)
_SERVICE_BUS = ("Microsoft.ServiceBus/namespaces",)
_EVENT_HUBS = ("Microsoft.EventHub/namespaces",)
_ACR = ("Microsoft.ContainerRegistry/registries",)
_APPCONFIG = ("Microsoft.AppConfiguration/configurationStores",)

CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7", "View all resources.", ()),
    CatalogEntry(
        "Contributor",
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Manage everything except access. Privileged.",
        (),
        privileged=True,
    ),
    CatalogEntry(
        "Owner",
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Manage everything, including access. Privileged.",
        (),
        privileged=True,
        can_assign_roles=True,
    ),
    CatalogEntry(
        "User Access Administrator",
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "Manage user access to Azure resources. Privileged.",
        (),
        privileged=True,
        can_assign_roles=True,
    ),
    CatalogEntry(
        "Role Based Access Control Administrator",
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "Manage access by assigning roles. Privileged.",
        (),
        privileged=True,
        can_assign_roles=True,
    ),
    CatalogEntry(
        "Reservations Administrator",
        "a8889054-8d42-49c9-bc1c-52486c10e7cd",
        "Manage reservations; in Azure's Privileged category (grants roleAssignments/write).",
        (),
        privileged=True,
        can_assign_roles=True,
    ),
    CatalogEntry(
        "Key Vault Secrets User",
        "4633458b-17de-408a-b874-0445c86b69e6",
        "Read secret contents.",
        _KV,
    ),
    CatalogEntry(
        "Key Vault Secrets Officer",
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        "Perform any action on the secrets of a key vault.",
        _KV,
    ),
    CatalogEntry(
        "Key Vault Crypto User",
        "12338af0-0e69-4776-bea7-57ae8d297424",
        "Perform cryptographic operations using keys.",
        _KV,
    ),
    CatalogEntry(
        "Key Vault Certificate User",
        "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
        "Read entire certificate contents including secret and key portion.",
        _KV,
    ),
    CatalogEntry(
        "Key Vault Administrator",
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        "Perform all data plane operations on a key vault and all objects in it.",
        _KV,
    ),
    CatalogEntry(
        "Key Vault Data Access Administrator",
        "8b54135c-b56d-4d72-a534-26097cfdc8d8",
        "Manage access to Key Vault by adding or removing role assignments (ABAC-constrained).",
        _KV,
        can_assign_roles=True,
    ),
    CatalogEntry(
        "Storage Blob Data Reader",
        "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        "Read and list Azure Storage containers and blobs.",
        _STORAGE,
    ),
    CatalogEntry(
        "Storage Blob Data Contributor",
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        "Read, write and delete Azure Storage containers and blobs.",
        _STORAGE,
    ),
    CatalogEntry(
        "Storage Blob Data Owner",
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "Full access to Azure Storage blob containers and data, including POSIX ACLs.",
        _STORAGE,
    ),
    CatalogEntry(
        "Storage Queue Data Contributor",
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "Read, write and delete Azure Storage queues and queue messages.",
        _STORAGE,
    ),
    CatalogEntry(
        "Azure Service Bus Data Receiver",
        "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
        "Receive access to Azure Service Bus resources.",
        _SERVICE_BUS,
    ),
    CatalogEntry(
        "Azure Service Bus Data Sender",
        "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
        "Send access to Azure Service Bus resources.",
        _SERVICE_BUS,
    ),
    CatalogEntry(
        "Azure Service Bus Data Owner",
        "090c5cfd-751d-490a-894a-3ce6f1109419",
        "Full access to Azure Service Bus resources.",
        _SERVICE_BUS,
    ),
    CatalogEntry(
        "Azure Event Hubs Data Receiver",
        "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
        "Receive access to Azure Event Hubs resources.",
        _EVENT_HUBS,
    ),
    CatalogEntry(
        "Azure Event Hubs Data Sender",
        "2b629674-e913-4c01-ae53-ef4638d8f975",
        "Send access to Azure Event Hubs resources.",
        _EVENT_HUBS,
    ),
    CatalogEntry(
        "Azure Event Hubs Data Owner",
        "f526a384-b230-433a-b45c-95f59c4a2dec",
        "Full access to Azure Event Hubs resources.",
        _EVENT_HUBS,
    ),
    CatalogEntry(
        "DNS Zone Contributor",
        "befefa01-2a29-4197-83a8-272ff33ce314",
        "Manage DNS zones and record sets, but not who has access to them.",
        ("Microsoft.Network/dnsZones",),
    ),
    CatalogEntry(
        "Private DNS Zone Contributor",
        "b12aa53e-6015-4669-85d0-8515ebb3ae7f",
        "Manage private DNS zones, but not who has access to them.",
        ("Microsoft.Network/privateDnsZones",),
    ),
    CatalogEntry("AcrPull", "7f951dda-4ed3-4680-a7ca-43fe172d538d", "Pull artifacts.", _ACR),
    CatalogEntry("AcrPush", "8311e382-0749-4cb8-b61a-304f252e45ec", "Push artifacts.", _ACR),
    CatalogEntry(
        "App Configuration Data Reader",
        "516239f1-63e1-4d78-a4de-a74fb236a071",
        "Read App Configuration data.",
        _APPCONFIG,
    ),
    CatalogEntry(
        "App Configuration Data Owner",
        "5ae67dd6-50cb-40e7-96ff-dc2bfa4b606b",
        "Full access to App Configuration data.",
        _APPCONFIG,
    ),
    CatalogEntry(
        "Managed Identity Contributor",
        "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
        "Create, read, update and delete user-assigned identities.",
        ("Microsoft.ManagedIdentity/userAssignedIdentities",),
        # Control over identities (their credentials, their use): a takeover if misplaced.
        privileged=True,
    ),
    CatalogEntry(
        "Managed Identity Operator",
        "f1a07417-d97a-45cb-824c-7a7467783830",
        "Read and assign user-assigned identities.",
        ("Microsoft.ManagedIdentity/userAssignedIdentities",),
        # Control over identities (their credentials, their use): a takeover if misplaced.
        privileged=True,
    ),
    CatalogEntry(
        "Network Contributor",
        "4d97b98b-1d4f-4787-a291-c67834d212e7",
        "Manage networks, but not access to them.",
        ("Microsoft.Network",),
    ),
)


def catalog_ensure(catalog_role_model: Any) -> int:
    """Create or update every catalog entry (keyed by role definition GUID); returns the count."""
    for entry in CATALOG:
        catalog_role_model.objects.update_or_create(
            role_definition_guid=entry.guid,
            defaults={
                "name": entry.name,
                "description": entry.description,
                "resource_types": list(entry.resource_types),
                "privileged": entry.privileged,
                "can_assign_roles": entry.can_assign_roles,
            },
        )
    return len(CATALOG)
