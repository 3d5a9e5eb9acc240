"""A pasted Azure portal URL becomes the canonical scope it shows, or a clear refusal."""

from __future__ import annotations

import pytest

from identities.scopes import ScopeError, scope_from_portal_url
from tests.support.people import RESOURCE_GROUP_SCOPE, STORAGE_SCOPE, SUBSCRIPTION, VAULT_SCOPE

TENANT_PART = "#@contoso.onmicrosoft.com/resource"


@pytest.mark.parametrize(
    ("url", "scope"),
    [
        (f"https://portal.azure.com/{TENANT_PART}{VAULT_SCOPE}/overview", VAULT_SCOPE),
        (f"https://portal.azure.com/{TENANT_PART}{VAULT_SCOPE}", VAULT_SCOPE),
        (f"https://portal.azure.com/#resource{STORAGE_SCOPE}/containersList", STORAGE_SCOPE),
        (
            f"https://portal.azure.com/{TENANT_PART}"
            f"/subscriptions/{SUBSCRIPTION.upper()}/resourcegroups/rg-payments/overview",
            RESOURCE_GROUP_SCOPE,
        ),
        (f"  https://portal.azure.us/{TENANT_PART}{VAULT_SCOPE}/overview  ", VAULT_SCOPE),
    ],
)
def test_a_resource_url_gives_its_canonical_scope(url: str, scope: str) -> None:
    assert scope_from_portal_url(url).id == scope


@pytest.mark.parametrize(
    "url",
    [
        "https://portal.azure.com/#view/HubsExtension/BrowseAll",
        "https://portal.azure.com/#home",
        f"https://portal.azure.com.evil.example/{TENANT_PART}{VAULT_SCOPE}/overview",
        f"http://portal.azure.com/{TENANT_PART}{VAULT_SCOPE}/overview",
        f"https://portal.azure.com/{VAULT_SCOPE}",
    ],
)
def test_a_url_that_is_not_a_portal_resource_url_is_refused_saying_so(url: str) -> None:
    with pytest.raises(ScopeError) as caught:
        scope_from_portal_url(url)
    assert caught.value.rule == "not_a_resource_url"
    assert "Azure portal" in caught.value.explanation


@pytest.mark.parametrize(
    ("suffix", "rule"),
    [("/../../x/overview", "scope_dot_segment"), ("/%2e%2e/overview", "scope_percent_encoding")],
)
def test_the_id_in_a_portal_url_obeys_the_scope_rules(suffix: str, rule: str) -> None:
    with pytest.raises(ScopeError) as caught:
        scope_from_portal_url(f"https://portal.azure.com/{TENANT_PART}{VAULT_SCOPE}{suffix}")
    assert caught.value.rule == rule
