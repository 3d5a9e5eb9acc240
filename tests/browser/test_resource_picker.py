"""The resource finder in a real browser: a scope picked with the keyboard from the type-ahead
over the team's resources (the emulator's Resource Graph, searched by the server), and a pasted
Azure portal URL, both filed as canonical scopes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from identities.models import CatalogRole, IdentityRequest
from tests.browser.conftest import Screenshot, SignIn
from tests.support.emulator import Emulator
from tests.support.people import (
    RESOURCE_GROUP_SCOPE,
    SEARCH_VAULT_SCOPE,
    STORAGE_SCOPE,
    VAULT_SCOPE,
)

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


def test_a_requester_picks_a_resource_through_the_type_ahead_with_the_keyboard(
    resource_graph: Emulator,
    cluster: Any,
    catalog: dict[str, CatalogRole],
    requester: Any,
    sign_in: SignIn,
    screenshot: Screenshot,
    chromium: Any,
) -> None:
    resource_graph.register_resources(VAULT_SCOPE, STORAGE_SCOPE, SEARCH_VAULT_SCOPE)
    resource_graph.register_resources(
        *(
            f"{RESOURCE_GROUP_SCOPE}/providers/Microsoft.KeyVault/vaults/kv-extra-{n:02}"
            for n in range(30)
        )
    )
    page = sign_in(requester, next="/requests/new/")
    fill_the_rest(page, cluster)
    page.get_by_label("Role 1", exact=True).select_option("Key Vault Secrets User")
    finder = page.get_by_role("combobox", name="Find a resource for role 1")
    listbox = page.get_by_role("listbox", name="Resources for role 1")

    finder.press_sequentially("kv-")
    expect(finder).to_have_attribute("aria-expanded", "true")
    # Key vaults only (the role's type), the user's team's only, at most 25 with the rest counted.
    expect(listbox.get_by_role("option")).to_have_count(25)
    expect(page.locator("#id_roles-0-scope-finder-status")).to_contain_text(
        "31 matches; 6 more: type more to narrow."
    )
    assert SEARCH_VAULT_SCOPE not in listbox.inner_html()
    expect(listbox.get_by_role("group").first).to_have_attribute(
        "aria-label", re.compile(r"^rg-payments in subscription ")
    )
    finder.fill("")
    finder.press_sequentially("kv-pay")
    option = listbox.get_by_role("option", name=re.compile(r"^kv-payments"))
    expect(listbox.get_by_role("option")).to_have_count(1)
    finder.press("ArrowDown")
    expect(option).to_have_attribute("aria-selected", "true")
    expect(finder).to_have_attribute("aria-activedescendant", option.get_attribute("id") or "")
    chromium.report.check_now(page)  # axe on the open listbox, an option active
    screenshot(page, "20-new-request-resource-finder")
    finder.press("Enter")

    expect(finder).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_label("Scope of role 1")).to_have_value(VAULT_SCOPE)
    expect(page.locator("#policy-feedback")).to_contain_text("No policy violations")
    finder.press("Escape")
    expect(finder).to_have_value("")
    page.get_by_role("button", name="File request").click()
    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    assert IdentityRequest.objects.get().roles.get().scope == VAULT_SCOPE


def test_without_a_match_the_finder_says_so_and_the_search_page_is_linked(
    resource_graph: Emulator,
    cluster: Any,
    catalog: dict[str, CatalogRole],
    requester: Any,
    sign_in: SignIn,
) -> None:
    resource_graph.register_resources(VAULT_SCOPE)
    page = sign_in(requester, next="/requests/new/")
    finder = page.get_by_role("combobox", name="Find a resource for role 1")

    finder.press_sequentially("zz-nothing")

    expect(page.locator("#id_roles-0-scope-finder-status")).to_have_text(
        "No resources of your teams match."
    )
    expect(finder).to_have_attribute("aria-expanded", "false")
    search = page.get_by_role("link", name=re.compile("Search your teams' resources in Azure"))
    page.goto(search.get_attribute("href") + "?q=kv-")  # the no-JavaScript way (axe runs here too)
    expect(page.locator("table")).to_contain_text(VAULT_SCOPE)


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
