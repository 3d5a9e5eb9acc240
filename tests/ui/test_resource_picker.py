"""Finding a scope for the new-request form without JavaScript: the form itself asks Azure
nothing (the type-ahead asks GET /api/v1/resources/ on demand), the resource search page lists
the team's resources from the emulator's Resource Graph, paged, with ids to copy; pasted Azure
portal URLs become canonical scopes."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import Cluster, IdentityRequest
from tests.support.emulator import Emulator
from tests.support.people import (
    RESOURCE_GROUP_SCOPE,
    SEARCH_VAULT_SCOPE,
    STORAGE_SCOPE,
    VAULT_SCOPE,
)
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db

PORTAL_URL = f"https://portal.azure.com/#@contoso.onmicrosoft.com/resource{STORAGE_SCOPE}/overview"


@pytest.fixture
def azure(resource_graph: Emulator, cluster: Cluster) -> Emulator:
    resource_graph.register_resources(VAULT_SCOPE, STORAGE_SCOPE, SEARCH_VAULT_SCOPE)
    return resource_graph


@pytest.fixture
def form_data(cluster: Cluster, catalog: Any) -> dict[str, str]:
    return {
        "team": "payments",
        "cluster": cluster.name,
        "namespace": "payments",
        "service_account": "checkout",
        "app_name": "checkout",
        "roles-TOTAL_FORMS": "1",
        "roles-INITIAL_FORMS": "0",
        "roles-MIN_NUM_FORMS": "1",
        "roles-MAX_NUM_FORMS": "20",
        "roles-0-role": "Key Vault Secrets User",
        "roles-0-scope": "",
        "tags": "costCentre=cc-4711",
        "justification": "Checkout reads its payment provider secrets from Key Vault.",
    }


def graph_queries(azure: Emulator, since: int = 0) -> int:
    return sum(1 for entry in azure.requests(since) if entry["op"] == "graph.query")


def test_the_form_page_asks_azure_nothing_and_offers_the_finder_and_the_search_page(
    azure: Emulator, client_for: ClientFor, requester: Any
) -> None:
    response = client_for(requester).get(reverse("request_new"))

    html = response.content.decode()
    assert graph_queries(azure) == 0  # the list is fetched on demand, not per render
    assert VAULT_SCOPE not in html
    assert 'role="combobox"' in html and 'aria-controls="id_roles-0-scope-finder-list"' in html
    assert f'data-resources-url="{reverse("api:resource-list")}"' in html
    assert f'href="{reverse("resource_search")}"' in html


def test_the_search_page_lists_my_teams_resources_with_their_ids_to_copy(
    azure: Emulator, client_for: ClientFor, requester: Any
) -> None:
    response = client_for(requester).get(reverse("resource_search"))

    html = response.content.decode()
    assert response.status_code == 200
    for scope in (RESOURCE_GROUP_SCOPE, VAULT_SCOPE, STORAGE_SCOPE):
        assert f">{scope}</code>" in html
    assert SEARCH_VAULT_SCOPE not in html  # another team's
    assert "3 resources found." in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"role": "Key Vault Secrets User"}, [VAULT_SCOPE]),
        ({"q": "STPAY"}, [STORAGE_SCOPE]),
        ({"q": "rg-payments/providers/microsoft.keyvault"}, [VAULT_SCOPE]),
        ({"q": "kv-", "role": "Storage Blob Data Reader"}, []),
    ],
)
def test_the_search_page_narrows_by_role_and_by_part_of_the_name_or_id(
    azure: Emulator,
    client_for: ClientFor,
    requester: Any,
    query: dict[str, str],
    expected: list[str],
) -> None:
    response = client_for(requester).get(reverse("resource_search"), query)

    assert response.status_code == 200
    assert [resource.id for resource in response.context["page_obj"]] == expected


def test_naming_another_teams_team_on_the_search_page_is_404(
    azure: Emulator, client_for: ClientFor, requester: Any, outsider: Any
) -> None:
    mine = client_for(outsider).get(reverse("resource_search"), {"team": "search"})
    theirs = client_for(requester).get(reverse("resource_search"), {"team": "search"})

    assert SEARCH_VAULT_SCOPE in mine.content.decode()
    assert theirs.status_code == 404
    assert SEARCH_VAULT_SCOPE not in theirs.content.decode()


def test_an_unknown_role_on_the_search_page_is_named_on_its_field(
    azure: Emulator, client_for: ClientFor, requester: Any
) -> None:
    response = client_for(requester).get(reverse("resource_search"), {"role": "Owner of All"})

    assert response.status_code == 200
    assert response.context["form"].errors["role"] == [
        "Select a valid choice. Owner of All is not one of the available choices."
    ]
    assert response.context["page_obj"] is None


def test_the_search_page_is_paged(azure: Emulator, client_for: ClientFor, requester: Any) -> None:
    azure.register_resources(
        *(
            f"{RESOURCE_GROUP_SCOPE}/providers/Microsoft.KeyVault/vaults/kv-{n:02}"
            for n in range(60)
        )
    )
    client = client_for(requester)

    first = client.get(reverse("resource_search"), {"q": "kv-"})
    second = client.get(reverse("resource_search"), {"q": "kv-", "page": "2"})

    assert len(first.context["page_obj"]) == 50
    assert len(second.context["page_obj"]) == 11  # kv-00..kv-59 and kv-payments
    assert 'href="?q=kv-&amp;page=2"' in first.content.decode()
    assert graph_queries(azure) == 1  # the second page comes from the cache


def test_the_search_page_needs_a_sign_in(azure: Emulator, client: Any) -> None:
    response = client.get(reverse("resource_search"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_pasted_portal_url_is_filed_as_its_canonical_scope(
    azure: Emulator, client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    data = {**form_data, "roles-0-role": "Storage Blob Data Reader", "roles-0-scope": PORTAL_URL}

    response = client_for(requester).post(reverse("request_new"), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert IdentityRequest.objects.get().roles.get().scope == STORAGE_SCOPE


def test_a_url_that_is_not_a_resource_is_refused_with_a_clear_message(
    azure: Emulator, client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    data = {**form_data, "roles-0-scope": "https://portal.azure.com/#view/HubsExtension/BrowseAll"}

    response = client_for(requester).post(reverse("request_check"), data)

    assert response.json()["form_errors"]["id_roles-0-scope"] == [
        "Scope 'https://portal.azure.com/#view/HubsExtension/BrowseAll' is not the URL of a "
        "resource in the Azure portal (open the resource there and copy the address: "
        "https://portal.azure.com/#@<tenant>/resource/subscriptions/…/overview)."
    ]
    assert response.json()["ok"] is False


def test_when_azure_cannot_be_asked_the_search_page_says_so_and_the_form_takes_a_typed_scope(
    azure: Emulator, client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    azure.config(fault_rate_500=1.0, fault_ops=["graph.query"])
    client = client_for(requester)

    search = client.get(reverse("resource_search")).content.decode()
    response = client.post(reverse("request_new"), {**form_data, "roles-0-scope": VAULT_SCOPE})

    assert "could not be listed from Azure right now" in search
    assert response.status_code == 302
    assert IdentityRequest.objects.get().roles.get().scope == VAULT_SCOPE
