"""A hand-built PolicyContext, so policy tests run without a database."""

from __future__ import annotations

import dataclasses
from typing import Any

from identities.catalog import CATALOG
from identities.policy import ClusterFacts, PolicyContext, RequestDraft, RoleDraft, RoleFacts

SUBSCRIPTION = "6c3f1b2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c"
ISSUER = "https://westeurope.oic.prod-aks.azure.com/tenant/cluster/"
VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments"
)

CLUSTER = ClusterFacts(
    name="aks-test",
    subscription_id=SUBSCRIPTION,
    resource_group="rg-identities",
    oidc_issuer_url=ISSUER,
    workload_identity_enabled=True,
    allowed_scope_subscriptions=frozenset({SUBSCRIPTION}),
)


def catalog_facts() -> dict[str, RoleFacts]:
    facts: dict[str, RoleFacts] = {}
    for entry in CATALOG:
        role = RoleFacts(
            entry.name, entry.guid, entry.resource_types, entry.privileged, entry.can_assign_roles
        )
        facts[entry.name.lower()] = role
        facts[entry.guid.lower()] = role
    return facts


def make_context(**overrides: Any) -> PolicyContext:
    values: dict[str, Any] = {
        "team_exists": True,
        "cluster": CLUSTER,
        "owned_namespaces": frozenset({"payments", "payments-jobs", "default"}),
        "catalog": catalog_facts(),
        "scope_owners": {
            f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-payments": "payments",
            f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-search": "search",
        },
        "protected_resource_groups": frozenset(
            {f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-identities"}
        ),
    }
    values.update(overrides)
    return PolicyContext(**values)


BASE_DRAFT = RequestDraft(
    kind="new",
    team="payments",
    cluster="aks-test",
    namespace="payments",
    service_account="checkout",
    app_name="checkout",
    roles=(RoleDraft("Key Vault Secrets User", VAULT),),
    tags={"costCentre": "cc-4711"},
    justification="Checkout reads its secrets.",
)


def make_draft(**overrides: Any) -> RequestDraft:
    return dataclasses.replace(BASE_DRAFT, **overrides)
