"""A realistic hand-over input; tests override only the fields they are about."""

from __future__ import annotations

from typing import Any

from identities.manifests import HandoverSpec, RoleAssignmentSpec

SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-111122223333"
IDENTITY_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-identities"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-team-a-orders"
)
VAULT_SCOPE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-team-a"
    "/providers/Microsoft.KeyVault/vaults/kv-team-a"
)
KEY_VAULT_SECRETS_USER = RoleAssignmentSpec(
    role_name="Key Vault Secrets User",
    role_definition_guid="4633458b-17de-408a-b874-0445c86b69e6",
    scope=VAULT_SCOPE,
    name="6f1d6a8e-5d4c-4b8e-9a51-0c3a2e7b9f10",
)
STORAGE_BLOB_DATA_READER = RoleAssignmentSpec(
    role_name="Storage Blob Data Reader",
    role_definition_guid="2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    scope=f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-team-a",
    name="0d9c5b7a-3e2f-4a1b-8c6d-5e4f3a2b1c0d",
)
# Characters that break naive shell or HCL quoting.
ODD_TAGS = {
    "owner": "team-a",
    'quote"key': 'it\'s "quoted"',
    "template": "${var.secret} and %{ if true }x%{ endif }",
    "dollars": "$$${x} $HOME `id` $(id)",
    "backslash": "C:\\path\\n",
    "multi": "line one\nline two\ttab",
    "unicode": "café ☕",
    "spaces and = sign": "a = b; rm -rf /",
}


def make_spec(**overrides: Any) -> HandoverSpec:
    values: dict[str, Any] = {
        "app_name": "orders-api",
        "namespace": "team-a",
        "service_account": "orders-api",
        "client_id": "8f2c7a51-0e0b-4f6e-9b7d-2d3c4b5a6f70",
        "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "principal_id": "ce2ce14e-85d7-4629-bdbc-454d0519d987",
        "identity_name": "id-team-a-orders",
        "identity_resource_id": IDENTITY_ID,
        "subscription_id": SUBSCRIPTION,
        "resource_group": "rg-identities",
        "location": "westeurope",
        "cluster_name": "aks-prod-weu",
        "cluster_resource_group": "rg-aks-prod",
        "oidc_issuer_url": (
            "https://westeurope.oic.prod-aks.azure.com/72f988bf-86f1-41af-91ab-2d7cd011db47/"
            "1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6/"
        ),
        "fic_name": "fic-team-a-orders-api",
        "fic_subject": "system:serviceaccount:team-a:orders-api",
        "role_assignments": (KEY_VAULT_SECRETS_USER, STORAGE_BLOB_DATA_READER),
        "tags": {"owner": "team-a", "cost-center": "4711"},
        "token_expiration_seconds": None,
        "image": None,
        "portal_url": "https://portal.example.com/identities/42",
    }
    values.update(overrides)
    if ("namespace" in overrides or "service_account" in overrides) and (
        "fic_subject" not in overrides
    ):
        values["fic_subject"] = (
            f"system:serviceaccount:{values['namespace']}:{values['service_account']}"
        )
    return HandoverSpec(**values)
