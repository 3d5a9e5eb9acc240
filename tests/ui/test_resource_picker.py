"""The new-request form's resource picker (the team's resources from the emulator's Resource
Graph) and pasted Azure portal URLs, as the server handles them (no JavaScript needed)."""

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
    SUBSCRIPTION,
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


def test_the_picker_lists_my_teams_resources_grouped_by_resource_group(
    azure: Emulator, client_for: ClientFor, requester: Any
) -> None:
    response = client_for(requester).get(reverse("request_new"))

    html = response.content.decode()
    assert f'<optgroup label="rg-payments in subscription {SUBSCRIPTION}">' in html
    for scope in (RESOURCE_GROUP_SCOPE, VAULT_SCOPE, STORAGE_SCOPE):
        assert f'<option value="{scope}">' in html
    assert SEARCH_VAULT_SCOPE not in html  # another team's
    assert "3 of your teams' resources in Azure can be picked" in html


def test_a_picked_resource_becomes_the_scope_without_javascript(
    azure: Emulator, client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(
        reverse("request_new"), {**form_data, "roles-0-resource": VAULT_SCOPE}
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert IdentityRequest.objects.get().roles.get().scope == VAULT_SCOPE


def test_a_resource_that_is_not_in_the_picker_cannot_be_posted_as_a_pick(
    azure: Emulator, client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(
        reverse("request_new"), {**form_data, "roles-0-resource": SEARCH_VAULT_SCOPE}
    )

    assert response.status_code == 400
    assert not IdentityRequest.objects.exists()


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


def test_when_azure_cannot_be_asked_the_form_says_so_and_still_takes_a_typed_scope(
    azure: Emulator, client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    azure.config(fault_rate_500=1.0, fault_ops=["graph.query"])
    client = client_for(requester)

    page = client.get(reverse("request_new")).content.decode()
    response = client.post(reverse("request_new"), {**form_data, "roles-0-scope": VAULT_SCOPE})

    assert "could not be listed from Azure right now" in page
    assert 'class="resource-picker"' not in page
    assert response.status_code == 302
