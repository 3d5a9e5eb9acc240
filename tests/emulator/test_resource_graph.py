"""Azure Resource Graph over the inventory: the portal's two query shapes through the real SDK
(azure-mgmt-resourcegraph), paging with skip tokens, and ARM's 400 for anything else."""

from __future__ import annotations

import time
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from provisioning.resource_graph import existence_query, team_query
from tests.emulator.conftest import RG, RawArm
from tests.support.emulator import DEFAULT_SUBSCRIPTION, AzureClients, Emulator

GROUP = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{RG}"
VAULT = f"{GROUP}/providers/Microsoft.KeyVault/vaults/kv-app"
OTHER_SUBSCRIPTION = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def graph(emulator: Emulator, azure_clients: AzureClients) -> ResourceGraphClient:
    return ResourceGraphClient(
        azure_clients.credential,
        base_url=emulator.url,
        connection_verify=str(emulator.ca_path),
        api_version="2022-10-01",
        retry_total=0,
    )


def ask(graph: ResourceGraphClient, query: str, subscriptions: list[str], **options: Any) -> Any:
    return graph.resources(
        QueryRequest(
            subscriptions=subscriptions,
            query=query,
            options=QueryRequestOptions(result_format="objectArray", **options),
        )
    )


def test_existence_finds_resources_groups_and_subscriptions_and_not_the_missing(
    graph: ResourceGraphClient,
) -> None:
    wanted = [
        VAULT.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"),  # in~ ignores case
        GROUP,
        f"/subscriptions/{DEFAULT_SUBSCRIPTION}",
        f"{GROUP}/providers/Microsoft.KeyVault/vaults/kv-nowhere",
    ]

    answer = ask(graph, existence_query(wanted), [DEFAULT_SUBSCRIPTION])

    assert sorted(row["id"] for row in answer.data) == sorted(
        [VAULT, GROUP, f"/subscriptions/{DEFAULT_SUBSCRIPTION}"]
    )
    assert answer.total_records == answer.count == 3
    vault = next(row for row in answer.data if row["id"] == VAULT)
    assert set(vault) == {
        "id",
        "type",
        "name",
        "subscriptionId",
        "resourceGroup",
        "location",
        "tags",
    }
    assert (vault["type"], vault["name"], vault["resourceGroup"]) == (
        "Microsoft.KeyVault/vaults",
        "kv-app",
        RG,
    )


def test_only_the_subscriptions_asked_for_are_searched(
    emulator: Emulator, graph: ResourceGraphClient
) -> None:
    elsewhere = f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/{RG}"
    emulator.register_resources(elsewhere)

    answer = ask(graph, existence_query([elsewhere, GROUP]), [DEFAULT_SUBSCRIPTION])

    assert [row["id"] for row in answer.data] == [GROUP]


def test_the_team_query_finds_its_groups_their_resources_and_what_is_tagged_for_it(
    emulator: Emulator, graph: ResourceGraphClient
) -> None:
    tagged = (
        f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg-shared/providers/"
        "Microsoft.Storage/storageAccounts/stpayments"
    )
    emulator.register_resources(tagged, tags={"owner-team": "payments"})
    emulator.register_resources(
        f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg-shared/providers/"
        "Microsoft.Storage/storageAccounts/stsearch",
        tags={"owner-team": "search"},
    )

    answer = ask(
        graph,
        team_query([(DEFAULT_SUBSCRIPTION, RG.upper())], "owner-team", "Payments"),
        [DEFAULT_SUBSCRIPTION],
    )

    assert [row["id"] for row in answer.data] == sorted([GROUP, VAULT, tagged], key=str.lower)


def test_pages_follow_skip_tokens_to_the_end(
    emulator: Emulator, graph: ResourceGraphClient
) -> None:
    vaults = [f"{GROUP}/providers/Microsoft.KeyVault/vaults/kv-{n:02}" for n in range(7)]
    emulator.register_resources(*vaults)
    query = team_query([(DEFAULT_SUBSCRIPTION, RG)], "owner-team", "nobody")

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        answer = ask(graph, query, [DEFAULT_SUBSCRIPTION], top=3, skip_token=token)
        pages += 1
        assert answer.total_records == 9  # the group, kv-app and seven more
        seen += [row["id"] for row in answer.data]
        token = answer.skip_token
        if not token:
            break

    assert pages == 3
    assert seen == sorted([GROUP, VAULT, *vaults], key=str.lower)


@pytest.mark.parametrize(
    "query",
    [
        "resources | summarize count() by type",
        "resources | where name contains 'kv'",
        "resources | where id in~ ('a') | extend x = 1",
        "resources | where id in~ ('a'",
        "securityresources | where id in~ ('a')",
        "resources | where tags['owner-team'] == 'x'",
    ],
)
def test_a_query_shape_the_portal_does_not_send_is_arms_400_invalid_query(
    raw_arm: RawArm, query: str
) -> None:
    response = raw_arm(
        "POST",
        "/providers/Microsoft.ResourceGraph/resources",
        json={"subscriptions": [DEFAULT_SUBSCRIPTION], "query": query},
        api_version="2022-10-01",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert error["message"].startswith("Please provide below info when asking for support")
    assert error["details"][0]["code"] == "InvalidQuery"


def test_a_bad_skip_token_and_a_top_over_1000_are_refused(graph: ResourceGraphClient) -> None:
    query = existence_query([GROUP])
    with pytest.raises(HttpResponseError) as caught:
        ask(graph, query, [DEFAULT_SUBSCRIPTION], skip_token="bm9wZQ")
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError) as caught:
        ask(graph, query, [DEFAULT_SUBSCRIPTION], top=1001)
    assert caught.value.status_code == 400


def test_the_index_follows_registrations_and_resets(
    emulator: Emulator, graph: ResourceGraphClient
) -> None:
    """The emulator answers from an index by id, subscription, group and tag: a row registered
    after a query is found by the next one, a re-tagged row moves, a reset empties it."""
    shared = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg-shared/providers"
    first, second = f"{shared}/Microsoft.Storage/storageAccounts/sta", f"{shared}/x.y/z/b"
    query = team_query([(DEFAULT_SUBSCRIPTION, "rg-none")], "owner-team", "payments")
    emulator.register_resources(first, tags={"owner-team": "payments"})
    assert [row["id"] for row in ask(graph, query, [DEFAULT_SUBSCRIPTION]).data] == [first]

    emulator.register_resources(second, tags={"owner-team": "PAYMENTS"})  # =~: any case
    emulator.register_resources(first, tags={"owner-team": "search"})
    assert [row["id"] for row in ask(graph, query, [DEFAULT_SUBSCRIPTION]).data] == [second]
    assert [
        row["id"] for row in ask(graph, existence_query([first]), [DEFAULT_SUBSCRIPTION]).data
    ] == [first]

    emulator.control("POST", "reset", {})
    assert ask(graph, query, [DEFAULT_SUBSCRIPTION]).data == []


# Resource Graph's per-user quota (Learn, "Guidance for throttled requests in Azure Resource
# Graph"): 15 queries per 5-second window by default; the tests set 3 per 2 s.
QUOTA_QUERIES, QUOTA_WINDOW = 3, 2


def graph_post(raw_arm: RawArm, query: str = "") -> Any:
    return raw_arm(
        "POST",
        "/providers/Microsoft.ResourceGraph/resources",
        json={"subscriptions": [DEFAULT_SUBSCRIPTION], "query": query or existence_query([GROUP])},
        api_version="2022-10-01",
    )


def test_every_answer_says_how_many_queries_are_left_and_when_the_quota_resets(
    raw_arm: RawArm,
) -> None:
    # Off by default (graph_quota_queries null): Azure's default quota, after one query.
    unthrottled = graph_post(raw_arm)
    assert unthrottled.status_code == 200
    assert unthrottled.headers["x-ms-user-quota-remaining"] == "14"
    assert unthrottled.headers["x-ms-user-quota-resets-after"] == "00:00:05"

    raw_arm.emulator.config(
        graph_quota_queries=QUOTA_QUERIES, graph_quota_window_seconds=QUOTA_WINDOW
    )
    # A query Resource Graph refuses is answered, and counted, like any other.
    refused = graph_post(raw_arm, "resources | summarize count() by type")
    answers = [refused, *(graph_post(raw_arm) for _ in range(QUOTA_QUERIES - 1))]

    assert [a.status_code for a in answers] == [400, 200, 200]
    assert [a.headers["x-ms-user-quota-remaining"] for a in answers] == ["2", "1", "0"]
    for answer in answers:
        assert answer.headers["x-ms-user-quota-resets-after"] in {"00:00:01", "00:00:02"}


def test_past_the_quota_the_answer_is_429_rate_limiting_until_the_window_resets(
    raw_arm: RawArm,
) -> None:
    raw_arm.emulator.config(
        graph_quota_queries=QUOTA_QUERIES, graph_quota_window_seconds=QUOTA_WINDOW
    )
    started = time.monotonic()
    for _ in range(QUOTA_QUERIES):
        assert graph_post(raw_arm).status_code == 200

    throttled = graph_post(raw_arm)

    assert throttled.status_code == 429
    assert throttled.headers["x-ms-user-quota-remaining"] == "0"
    resets_after = throttled.headers["x-ms-user-quota-resets-after"]
    assert resets_after in {"00:00:01", "00:00:02"}
    assert "Retry-After" not in throttled.headers  # Learn names none; the quota headers say
    error = throttled.json()["error"]
    assert error["code"] == "RateLimiting"
    assert error["message"].startswith("Please provide below info when asking for support")
    assert error["details"] == [
        {
            "code": "RateLimiting",
            "message": "Client application has been throttled and should not attempt to repeat "
            "the request until an amount of time has elapsed. Please see "
            "https://aka.ms/resourcegraph-throttling for help.",
        }
    ]
    assert graph_post(raw_arm).status_code == 429  # a throttled query does not end the window

    time.sleep(max(0.0, started + QUOTA_WINDOW - time.monotonic()) + 0.2)
    again = graph_post(raw_arm)

    assert again.status_code == 200
    assert again.headers["x-ms-user-quota-remaining"] == str(QUOTA_QUERIES - 1)
    assert again.headers["x-ms-user-quota-resets-after"] == "00:00:02"


def test_the_sdk_sees_429_with_the_quota_headers(
    raw_arm: RawArm, graph: ResourceGraphClient
) -> None:
    raw_arm.emulator.config(graph_quota_queries=1, graph_quota_window_seconds=30)
    ask(graph, existence_query([GROUP]), [DEFAULT_SUBSCRIPTION])

    with pytest.raises(HttpResponseError) as caught:
        ask(graph, existence_query([GROUP]), [DEFAULT_SUBSCRIPTION])

    assert caught.value.status_code == 429
    assert caught.value.error is not None and caught.value.error.code == "RateLimiting"
    assert caught.value.response is not None
    assert caught.value.response.headers["x-ms-user-quota-remaining"] == "0"
    assert caught.value.response.headers["x-ms-user-quota-resets-after"] in {
        "00:00:29",
        "00:00:30",
    }
