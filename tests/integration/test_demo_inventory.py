"""seed_demo's inventory in the emulator (issue 14, item 5): each team's storage accounts, key
vaults, Service Bus namespace and Cosmos DB account, in its resource group, listed by the
picker and the resource search page (the emulator's Resource Graph over HTTPS) as `dev.py run`
shows them; a request on one of them is filed, one on a resource the inventory lacks is
refused."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from identities.models import IdentityRequest
from provisioning.management.commands.seed_demo import (
    DEMO_RESOURCES,
    SANDBOX_SUBSCRIPTION,
)
from tests.support.emulator import Emulator

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/resources/"


def rid(team: str, kind: str, name: str) -> str:
    return f"/subscriptions/{SANDBOX_SUBSCRIPTION}/resourceGroups/rg-{team}/providers/{kind}/{name}"


@pytest.fixture
def seeded(resource_graph: Emulator, settings: Any) -> dict[str, Any]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo", "--force", stdout=StringIO(), stderr=StringIO())
    users = get_user_model().objects
    return {"alice": users.get(username="alice"), "bob": users.get(username="bob")}


def listed(user: Any, **query: str) -> list[str]:
    client = APIClient()
    client.force_login(user)
    response = client.get(URL, {"page_size": 200, **query})
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_each_team_sees_its_own_demo_resources_of_every_kind(seeded: dict[str, Any]) -> None:
    for username, team in (("alice", "payments"), ("bob", "search")):
        shown = listed(seeded[username])
        expected = {rid(team, kind, name) for kind, name, _ in DEMO_RESOURCES[team]}
        assert expected <= set(shown), (team, shown)
        kinds = {kind for kind, _, _ in DEMO_RESOURCES[team]}
        assert kinds == {
            "Microsoft.Storage/storageAccounts",
            "Microsoft.KeyVault/vaults",
            "Microsoft.ServiceBus/namespaces",
            "Microsoft.DocumentDB/databaseAccounts",
        }
        other = "search" if team == "payments" else "payments"
        assert not [row for row in shown if f"/resourceGroups/rg-{other}" in row], shown
        # The storage account tagged owner-team=<team> in rg-shared is theirs too.
        assert any(row.endswith(f"/storageAccounts/stshared{team}") for row in shown)


def test_the_picker_offers_only_what_the_role_applies_to(seeded: dict[str, Any]) -> None:
    alice = seeded["alice"]
    vaults = listed(alice, role="Key Vault Secrets User")
    assert vaults == [
        rid("payments", "Microsoft.KeyVault/vaults", "kv-payments-checkout"),
        rid("payments", "Microsoft.KeyVault/vaults", "kv-payments-ledger"),
    ]
    assert listed(alice, role="Azure Service Bus Data Sender") == [
        rid("payments", "Microsoft.ServiceBus/namespaces", "sbns-payments-orders")
    ]

    # The form's no-JavaScript way to the same list: the resource search page.
    client = APIClient()
    client.force_login(alice)
    search = client.get(reverse("resource_search")).content.decode()
    for kind, name, _ in DEMO_RESOURCES["payments"]:
        assert f">{rid('payments', kind, name)}</code>" in search
    assert "kv-search-api" not in search


def test_a_demo_resource_can_be_requested_and_a_missing_one_cannot(
    seeded: dict[str, Any],
) -> None:
    client = APIClient()
    client.force_login(seeded["alice"])
    body = {
        "team": "payments",
        "cluster": "aks-sandbox",
        "namespace": "payments",
        "service_account": "checkout",
        "app_name": "checkout",
        "roles": [
            {
                "role": "Key Vault Secrets User",
                "scope": rid("payments", "Microsoft.KeyVault/vaults", "kv-payments-checkout"),
            }
        ],
        "tags": {"costCentre": "cc-4711"},
        "justification": "Checkout reads its payment provider secrets from Key Vault.",
    }
    filed = client.post("/api/v1/identity-requests/", body, format="json")
    assert filed.status_code == 201, filed.content

    body["service_account"] = body["app_name"] = "refunds"
    missing = rid("payments", "Microsoft.KeyVault/vaults", "kv-payments-gone")
    body["roles"] = [{"role": "Key Vault Secrets User", "scope": missing}]
    refused = client.post("/api/v1/identity-requests/", body, format="json")
    assert refused.status_code == 400
    assert "scope_not_found" in refused.content.decode()
    assert IdentityRequest.objects.count() == 1
