"""Built-in Azure role definitions the emulator knows (names and GUIDs from AZURE-FACTS §5).

Permissions are plausible summaries, not the full real lists, except where the facts document
them: Owner has ``*``; Contributor ``*`` minus Microsoft.Authorization writes and deletes; User
Access Administrator ``Microsoft.Authorization/*``; RBAC Administrator and Reservations
Administrator ``Microsoft.Authorization/roleAssignments/write``; Key Vault Data Access
Administrator also carries ``roleAssignments/write`` (a portal policy should flag it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

_ASSIGN = [
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/delete",
]
_READ = ["*/read"]


@dataclass(frozen=True)
class RoleDefinition:
    """One built-in role: what ``roleDefinitions`` returns for it."""

    name: str
    guid: str
    description: str
    actions: list[str] = field(default_factory=list)
    not_actions: list[str] = field(default_factory=list)
    data_actions: list[str] = field(default_factory=list)


def _data(provider: str, verbs: str) -> list[str]:
    return [f"{provider}/{verb}" for verb in verbs.split()]


BUILT_IN_ROLES: tuple[RoleDefinition, ...] = (
    RoleDefinition(
        "Reader",
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "View all resources, but does not allow you to make any changes.",
        _READ,
    ),
    RoleDefinition(
        "Contributor",
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Full access to manage all resources, but cannot assign roles in Azure RBAC.",
        ["*"],
        [
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
        ],
    ),
    RoleDefinition(
        "Owner",
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Full access to manage all resources, including assigning roles in Azure RBAC.",
        ["*"],
    ),
    RoleDefinition(
        "User Access Administrator",
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "Lets you manage user access to Azure resources.",
        ["*/read", "Microsoft.Authorization/*"],
    ),
    RoleDefinition(
        "Role Based Access Control Administrator",
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "Manage access to Azure resources by assigning roles using Azure RBAC.",
        ["*/read", *_ASSIGN],
    ),
    RoleDefinition(
        "Reservations Administrator",
        "a8889054-8d42-49c9-bc1c-52486c10e7cd",
        "Lets one read and manage all the reservations in a tenant.",
        [
            "Microsoft.Capacity/*/read",
            "Microsoft.Capacity/*/action",
            "Microsoft.Capacity/*/write",
            "Microsoft.Authorization/roleAssignments/read",
            "Microsoft.Authorization/roleAssignments/write",
        ],
    ),
    RoleDefinition(
        "Key Vault Secrets User",
        "4633458b-17de-408a-b874-0445c86b69e6",
        "Read secret contents.",
        [],
        [],
        _data("Microsoft.KeyVault/vaults/secrets", "getSecret/action readMetadata/action"),
    ),
    RoleDefinition(
        "Key Vault Secrets Officer",
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        "Perform any action on the secrets of a key vault.",
        ["Microsoft.KeyVault/vaults/*/read"],
        [],
        ["Microsoft.KeyVault/vaults/secrets/*"],
    ),
    RoleDefinition(
        "Key Vault Crypto User",
        "12338af0-0e69-4776-bea7-57ae8d297424",
        "Perform cryptographic operations using keys.",
        [],
        [],
        _data(
            "Microsoft.KeyVault/vaults/keys",
            "read encrypt/action decrypt/action wrap/action unwrap/action sign/action "
            "verify/action",
        ),
    ),
    RoleDefinition(
        "Key Vault Certificate User",
        "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
        "Read entire certificate contents including secret and key portion.",
        [],
        [],
        [
            "Microsoft.KeyVault/vaults/certificates/read",
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/keys/read",
        ],
    ),
    RoleDefinition(
        "Key Vault Administrator",
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        "Perform all data plane operations on a key vault and all objects in it.",
        ["Microsoft.KeyVault/vaults/*/read"],
        [],
        ["Microsoft.KeyVault/vaults/*"],
    ),
    RoleDefinition(
        "Key Vault Data Access Administrator",
        "8b54135c-b56d-4d72-a534-26097cfdc8d8",
        "Manage access to Key Vault by adding or removing role assignments (ABAC-constrained).",
        [
            "Microsoft.Authorization/roleAssignments/read",
            *_ASSIGN,
            "Microsoft.KeyVault/vaults/*/read",
        ],
    ),
    RoleDefinition(
        "Storage Blob Data Reader",
        "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        "Read and list Azure Storage containers and blobs.",
        ["Microsoft.Storage/storageAccounts/blobServices/containers/read"],
        [],
        ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
    ),
    RoleDefinition(
        "Storage Blob Data Contributor",
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        "Read, write, and delete Azure Storage containers and blobs.",
        ["Microsoft.Storage/storageAccounts/blobServices/containers/*"],
        [],
        _data(
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs",
            "read write delete add/action move/action",
        ),
    ),
    RoleDefinition(
        "Storage Blob Data Owner",
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "Provides full access to Azure Storage blob containers and data.",
        ["Microsoft.Storage/storageAccounts/blobServices/containers/*"],
        [],
        ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
    ),
    RoleDefinition(
        "Storage Queue Data Contributor",
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "Read, write, and delete Azure Storage queues and queue messages.",
        ["Microsoft.Storage/storageAccounts/queueServices/queues/*"],
        [],
        ["Microsoft.Storage/storageAccounts/queueServices/queues/messages/*"],
    ),
    RoleDefinition(
        "Azure Service Bus Data Receiver",
        "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
        "Allows for receive access to Azure Service Bus resources.",
        ["Microsoft.ServiceBus/*/queues/read", "Microsoft.ServiceBus/*/topics/read"],
        [],
        ["Microsoft.ServiceBus/*/receive/action"],
    ),
    RoleDefinition(
        "Azure Service Bus Data Sender",
        "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
        "Allows for send access to Azure Service Bus resources.",
        ["Microsoft.ServiceBus/*/queues/read", "Microsoft.ServiceBus/*/topics/read"],
        [],
        ["Microsoft.ServiceBus/*/send/action"],
    ),
    RoleDefinition(
        "Azure Service Bus Data Owner",
        "090c5cfd-751d-490a-894a-3ce6f1109419",
        "Allows for full access to Azure Service Bus resources.",
        ["Microsoft.ServiceBus/*"],
        [],
        ["Microsoft.ServiceBus/*"],
    ),
    RoleDefinition(
        "Azure Event Hubs Data Receiver",
        "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
        "Allows receive access to Azure Event Hubs resources.",
        ["Microsoft.EventHub/*/eventhubs/consumergroups/read"],
        [],
        ["Microsoft.EventHub/*/eventhubs/receive/action"],
    ),
    RoleDefinition(
        "Azure Event Hubs Data Sender",
        "2b629674-e913-4c01-ae53-ef4638d8f975",
        "Allows send access to Azure Event Hubs resources.",
        ["Microsoft.EventHub/*/eventhubs/read"],
        [],
        ["Microsoft.EventHub/*/eventhubs/send/action"],
    ),
    RoleDefinition(
        "Azure Event Hubs Data Owner",
        "f526a384-b230-433a-b45c-95f59c4a2dec",
        "Allows for full access to Azure Event Hubs resources.",
        ["Microsoft.EventHub/*"],
        [],
        ["Microsoft.EventHub/*"],
    ),
    RoleDefinition(
        "DNS Zone Contributor",
        "befefa01-2a29-4197-83a8-272ff33ce314",
        "Lets you manage DNS zones and record sets in Azure DNS.",
        ["Microsoft.Network/dnsZones/*", "Microsoft.Resources/deployments/*"],
    ),
    RoleDefinition(
        "Private DNS Zone Contributor",
        "b12aa53e-6015-4669-85d0-8515ebb3ae7f",
        "Lets you manage private DNS zone resources.",
        ["Microsoft.Network/privateDnsZones/*", "Microsoft.Resources/deployments/*"],
    ),
    RoleDefinition(
        "AcrPull",
        "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        "acr pull",
        ["Microsoft.ContainerRegistry/registries/pull/read"],
    ),
    RoleDefinition(
        "AcrPush",
        "8311e382-0749-4cb8-b61a-304f252e45ec",
        "acr push",
        [
            "Microsoft.ContainerRegistry/registries/pull/read",
            "Microsoft.ContainerRegistry/registries/push/write",
        ],
    ),
    RoleDefinition(
        "App Configuration Data Reader",
        "516239f1-63e1-4d78-a4de-a74fb236a071",
        "Allows read access to App Configuration data.",
        [],
        [],
        ["Microsoft.AppConfiguration/configurationStores/*/read"],
    ),
    RoleDefinition(
        "App Configuration Data Owner",
        "5ae67dd6-50cb-40e7-96ff-dc2bfa4b606b",
        "Allows full access to App Configuration data.",
        [],
        [],
        [
            "Microsoft.AppConfiguration/configurationStores/*/read",
            "Microsoft.AppConfiguration/configurationStores/*/write",
            "Microsoft.AppConfiguration/configurationStores/*/delete",
        ],
    ),
    RoleDefinition(
        "Managed Identity Contributor",
        "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
        "Create, Read, Update, and Delete User Assigned Identity.",
        [
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/write",
            "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
        ],
    ),
    RoleDefinition(
        "Managed Identity Operator",
        "f1a07417-d97a-45cb-824c-7a7467783830",
        "Read and Assign User Assigned Identity.",
        [
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
        ],
    ),
    RoleDefinition(
        "Network Contributor",
        "4d97b98b-1d4f-4787-a291-c67834d212e7",
        "Lets you manage networks, but not access to them.",
        ["Microsoft.Network/*", "Microsoft.Resources/deployments/*"],
    ),
)

BY_GUID: dict[str, RoleDefinition] = {role.guid: role for role in BUILT_IN_ROLES}
