"""GET /api/v1/resources/: the Azure resources a team may use, from the emulator's Resource Graph
over HTTPS; visibility per team, filters, paging, an outage; and the existence check on filing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from identities.models import IdentityRequest
from identities.selectors import identity_request_policy
from tests.api.conftest import new_request_body
from tests.support.emulator import Emulator
from tests.support.people import (
    OTHER_SUBSCRIPTION,
    RESOURCE_GROUP_SCOPE,
    SEARCH_VAULT_SCOPE,
    STORAGE_SCOPE,
    SUBSCRIPTION,
    VAULT_SCOPE,
)

pytestmark = pytest.mark.django_db

URL = "/api/v1/resources/"
TAGGED_FOR_PAYMENTS = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-shared"
    "/providers/Microsoft.ServiceBus/namespaces/sb-payments"
)
ELSEWHERE = f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg-payments"
ClientFor = Callable[[Any], APIClient]


@pytest.fixture
def azure(resource_graph: Emulator, cluster: Any) -> Emulator:
    """payments: its group (rg-payments, with a vault and a storage account) and a Service Bus
    namespace tagged for it; search: its group with a vault; and a group in a subscription no
    cluster may grant roles in."""
    resource_graph.register_resources(VAULT_SCOPE, STORAGE_SCOPE, SEARCH_VAULT_SCOPE, ELSEWHERE)
    resource_graph.register_resources(TAGGED_FOR_PAYMENTS, tags={"owner-team": "payments"})
    return resource_graph


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_a_requester_sees_the_groups_resources_and_tagged_resources_of_their_team(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    response = client_for(requester).get(URL)

    assert ids(response) == [RESOURCE_GROUP_SCOPE, VAULT_SCOPE, STORAGE_SCOPE, TAGGED_FOR_PAYMENTS]
    rows = {row["id"]: row for row in response.json()["results"]}
    assert rows[VAULT_SCOPE] == {
        "id": VAULT_SCOPE,
        "name": "kv-payments",
        "type": "Microsoft.KeyVault/vaults",
        "subscription_id": SUBSCRIPTION,
        "resource_group": "rg-payments",
        "location": "eastus",
        "team": "payments",
        "owned_by": "resource_group",
    }
    assert rows[TAGGED_FOR_PAYMENTS]["owned_by"] == "tag"
    assert response.json()["count"] == 4


def test_another_teams_resources_are_not_listed_and_naming_its_team_is_404(
    azure: Emulator, outsider: Any, client_for: ClientFor
) -> None:
    client = client_for(outsider)

    assert ids(client.get(URL)) == [
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-search",
        SEARCH_VAULT_SCOPE,
    ]
    response = client.get(URL, {"team": "payments"})
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert "payments" in response.json()["detail"]


def test_anonymous_callers_get_401(azure: Emulator) -> None:
    response = APIClient().get(URL)
    assert response.status_code == 401


def test_an_approver_may_list_any_teams_resources(
    azure: Emulator, approver: Any, client_for: ClientFor
) -> None:
    client = client_for(approver)

    assert ids(client.get(URL)) == []  # no team of their own
    assert SEARCH_VAULT_SCOPE in ids(client.get(URL, {"team": "search"}))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"q": "KV-"}, [VAULT_SCOPE]),
        ({"q": "rg-shared"}, [TAGGED_FOR_PAYMENTS]),
        ({"type": "microsoft.storage/storageaccounts"}, [STORAGE_SCOPE]),
        ({"subscription": SUBSCRIPTION, "q": "st"}, [STORAGE_SCOPE]),
        ({"subscription": OTHER_SUBSCRIPTION}, []),
        ({"role": "Key Vault Secrets User"}, [VAULT_SCOPE]),
        ({"role": "storage blob data reader"}, [STORAGE_SCOPE]),
    ],
)
def test_filters_narrow_the_list(
    azure: Emulator,
    requester: Any,
    client_for: ClientFor,
    filters: dict[str, str],
    expected: list[str],
) -> None:
    assert ids(client_for(requester).get(URL, filters)) == expected


def test_a_bad_filter_is_a_400_naming_the_field(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    response = client_for(requester).get(URL, {"subscription": "not-a-guid"})

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "subscription"


def test_an_unknown_role_is_a_404_naming_it(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    response = client_for(requester).get(URL, {"role": "Owner of Everything"})

    assert response.status_code == 404
    assert "Owner of Everything" in response.json()["detail"]


def test_the_list_is_paged_by_limit_and_offset(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    client = client_for(requester)

    first = client.get(URL, {"limit": 3})
    second = client.get(first.json()["next"])

    assert ids(first) + ids(second) == [
        RESOURCE_GROUP_SCOPE,
        VAULT_SCOPE,
        STORAGE_SCOPE,
        TAGGED_FOR_PAYMENTS,
    ]
    assert second.json()["next"] is None


def test_azures_answer_is_cached_so_a_second_listing_asks_azure_nothing(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    client = client_for(requester)

    first, second = ids(client.get(URL)), ids(client.get(URL, {"q": "kv"}))

    assert (len(first), second) == (4, [VAULT_SCOPE])
    assert sum(1 for entry in azure.requests() if entry["op"] == "graph.query") == 1


def test_the_database_work_is_constant_in_the_number_of_resources(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    client = client_for(requester)
    with override_settings(SCOPE_LOOKUP_CACHE_SECONDS=0):  # Azure asked every time
        client.get(URL)  # the session and the like, once
        with CaptureQueriesContext(connection) as few:
            assert len(ids(client.get(URL))) == 4
        azure.register_resources(
            *(
                f"{RESOURCE_GROUP_SCOPE}/providers/Microsoft.KeyVault/vaults/kv-{n}"
                for n in range(40)
            )
        )
        with CaptureQueriesContext(connection) as many:
            assert len(ids(client.get(URL, {"limit": 200}))) == 44

    assert len(many.captured_queries) == len(few.captured_queries)


def test_when_azure_cannot_be_asked_the_answer_is_503_with_retry_after(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    azure.config(fault_rate_500=1.0, fault_ops=["graph.query"])

    response = client_for(requester).get(URL)

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response["Content-Type"] == "application/problem+json"


def test_the_endpoint_is_in_the_openapi_schema(api_client: APIClient) -> None:
    schema = yaml.safe_load(api_client.get("/api/schema/").content)
    operation = schema["paths"]["/api/v1/resources/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {
        "team",
        "q",
        "type",
        "subscription",
        "limit",
        "offset",
        "role",
    }


# --- the existence check on filing -----------------------------------------------------------


def test_filing_on_a_scope_that_does_not_exist_is_a_400_naming_the_field_rule_and_scope(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    missing = VAULT_SCOPE.replace("kv-payments", "kv-gone")
    body = new_request_body(roles=[{"role": "Key Vault Secrets User", "scope": missing}])

    response = client_for(requester).post("/api/v1/identity-requests/", body, format="json")

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["field"], error["pointer"], error["rule"]) == (
        "roles[0].scope",
        "#/roles/0/scope",
        "scope_not_found",
    )
    assert missing in error["message"]


def test_filing_while_azure_cannot_be_asked_is_accepted_with_the_finding(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    azure.config(fault_rate_500=1.0, fault_ops=["graph.query"])

    response = client_for(requester).post(
        "/api/v1/identity-requests/", new_request_body(), format="json"
    )

    assert response.status_code == 201, response.content
    identity_request = IdentityRequest.objects.get(pk=response.json()["id"])
    warnings = identity_request_policy(identity_request).warnings
    assert [(w.field, w.rule) for w in warnings] == [("roles[0].scope", "scope_unverified")]


def test_the_built_list_kept_in_memory_never_outlives_the_cached_answer(
    azure: Emulator, requester: Any, client_for: ClientFor
) -> None:
    client = client_for(requester)
    added = f"{RESOURCE_GROUP_SCOPE}/providers/Microsoft.KeyVault/vaults/kv-added"

    before = ids(client.get(URL))
    azure.register_resources(added)
    cached = ids(client.get(URL))
    cache.clear()  # the shared cache forgot (expiry, or a clear in another process)
    after = ids(client.get(URL))

    assert before == cached and added not in cached
    assert added in after
    assert sum(1 for entry in azure.requests() if entry["op"] == "graph.query") == 2


def test_the_type_ahead_asks_with_the_session_and_sees_only_the_users_teams(
    azure: Emulator, requester: Any
) -> None:
    """The form's type-ahead: a same-origin GET with the session cookie (no token, no CSRF
    token needed for a GET), at most 25 matches of the role's types."""
    browser = Client()
    browser.force_login(requester)
    query = {"q": "kv", "role": "Key Vault Secrets User", "limit": "25"}

    mine = browser.get(URL, {**query, "team": "payments"}, HTTP_ACCEPT="application/json")
    theirs = browser.get(URL, {**query, "team": "search"}, HTTP_ACCEPT="application/json")
    all_mine = browser.get(URL, query, HTTP_ACCEPT="application/json")

    assert mine.status_code == 200
    assert [row["id"] for row in mine.json()["results"]] == [VAULT_SCOPE]
    assert theirs.status_code == 404
    assert [row["id"] for row in all_mine.json()["results"]] == [VAULT_SCOPE]
