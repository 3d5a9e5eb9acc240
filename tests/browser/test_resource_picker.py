"""The resource picker in a real browser: a scope chosen from the team's resources (from the
emulator's Resource Graph), filtered, and a pasted Azure portal URL, both filed as canonical
scopes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from identities.models import CatalogRole, IdentityRequest
from tests.browser.conftest import Screenshot, SignIn
from tests.support.emulator import Emulator
from tests.support.people import SEARCH_VAULT_SCOPE, STORAGE_SCOPE, VAULT_SCOPE

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def fill_the_rest(page: Any, cluster: Any) -> None:
    page.get_by_label("Cluster", exact=True).select_option(cluster.name)
    page.get_by_label("Namespace", exact=True).fill("payments")
    page.get_by_label("ServiceAccount", exact=True).fill("checkout")
    page.get_by_label("App name").fill("checkout")
    page.get_by_label("Justification").fill("Checkout reads its secrets from Key Vault.")


def test_a_requester_picks_a_resource_from_the_filtered_picker(
    resource_graph: Emulator,
    cluster: Any,
    catalog: dict[str, CatalogRole],
    requester: Any,
    sign_in: SignIn,
    screenshot: Screenshot,
) -> None:
    resource_graph.register_resources(VAULT_SCOPE, STORAGE_SCOPE, SEARCH_VAULT_SCOPE)
    page = sign_in(requester, next="/requests/new/")
    fill_the_rest(page, cluster)
    page.get_by_label("Role 1", exact=True).select_option("Key Vault Secrets User")
    picker = page.get_by_label("Or pick a resource for role 1")
    options = picker.locator("option")
    expect(options).to_have_count(4)  # the prompt, the group, the vault, the storage account
    assert SEARCH_VAULT_SCOPE not in picker.inner_html()

    def hidden() -> list[str]:
        return sorted(
            options.evaluate_all("(all) => all.filter((o) => o.hidden).map((o) => o.value)")
        )

    # Only what Key Vault Secrets User is meant for: the storage account and the resource group
    # (a broad scope) are hidden.
    assert hidden() == sorted([STORAGE_SCOPE, VAULT_SCOPE.rsplit("/providers/", 1)[0]])
    page.get_by_label("Filter the resources to pick from").fill("zz-nothing")
    assert len(hidden()) == 3
    page.get_by_label("Filter the resources to pick from").fill("KV-")
    assert VAULT_SCOPE not in hidden()
    picker.select_option(label="kv-payments (vaults)")

    expect(page.get_by_label("Scope of role 1")).to_have_value(VAULT_SCOPE)
    expect(page.locator("#policy-feedback")).to_contain_text("No policy violations")
    screenshot(page, "20-new-request-resource-picked")
    page.get_by_role("button", name="File request").click()
    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    assert IdentityRequest.objects.get().roles.get().scope == VAULT_SCOPE


def test_a_requester_pastes_an_azure_portal_url(
    resource_graph: Emulator,
    cluster: Any,
    catalog: dict[str, CatalogRole],
    requester: Any,
    sign_in: SignIn,
    screenshot: Screenshot,
) -> None:
    resource_graph.register_resources(STORAGE_SCOPE)
    page = sign_in(requester, next="/requests/new/")
    fill_the_rest(page, cluster)
    page.get_by_label("Role 1", exact=True).select_option("Storage Blob Data Reader")
    scope = page.get_by_label("Scope of role 1")

    scope.fill("https://portal.azure.com/#view/HubsExtension/BrowseAll")
    expect(page.locator("#id_roles-0-scope-feedback")).to_contain_text(
        "is not the URL of a resource in the Azure portal"
    )
    scope.fill(
        f"https://portal.azure.com/#@contoso.onmicrosoft.com/resource{STORAGE_SCOPE}/overview"
    )
    expect(page.locator("#policy-feedback")).to_contain_text("No policy violations")
    screenshot(page, "21-new-request-portal-url")
    page.get_by_role("button", name="File request").click()
    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    assert IdentityRequest.objects.get().roles.get().scope == STORAGE_SCOPE
