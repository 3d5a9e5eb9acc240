"""Resource Graph's per-user quota (Learn, "Guidance for throttled requests in Azure Resource
Graph": 15 queries per 5-second window by default, `x-ms-user-quota-remaining` and
`x-ms-user-quota-resets-after` on every answer, 429 past it), against the emulator over HTTPS
with a small quota: a lookup that needs more queries than the quota holds waits for the reset
instead of failing; one that would wait longer than a web request may gives up at once, saying
why."""

from __future__ import annotations

import time

import pytest

from identities.scope_lookup import ScopeLookupUnavailable
from provisioning.azure import get_gateway
from provisioning.resource_graph import (
    IDS_PER_QUERY,
    PAGE_SIZE,
    WEB_QUOTA_WAIT_SECONDS,
    existence_query,
    lookup,
    team_resources,
)
from tests.support.emulator import DEFAULT_SUBSCRIPTION, Emulator

pytestmark = [pytest.mark.integration]

GROUP = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg-many"
WINDOW = 2  # seconds: the tests' quota window (Azure's is 5)


def vaults(count: int) -> list[str]:
    return [f"{GROUP}/providers/Microsoft.KeyVault/vaults/kv-{n:04}" for n in range(count)]


def graph_answers(emulator: Emulator) -> list[int]:
    return [entry["status"] for entry in emulator.requests() if entry["op"] == "graph.query"]


def use_up_the_quota(queries: int) -> None:
    """What other pages of the portal asked just before (the quota is the principal's)."""
    for _ in range(queries):
        get_gateway().query_resources(
            query=existence_query([GROUP]), subscriptions=[DEFAULT_SUBSCRIPTION]
        )


def test_an_existence_lookup_of_more_chunks_than_the_quota_waits_for_the_reset(
    resource_graph: Emulator,
) -> None:
    ids = vaults(2 * IDS_PER_QUERY + 1)  # three chunks, three queries
    resource_graph.register_resources(*ids)
    resource_graph.config(graph_quota_queries=2, graph_quota_window_seconds=WINDOW)
    started = time.monotonic()

    found = lookup(ids)

    assert sorted(found) == sorted(i.lower() for i in ids)
    assert time.monotonic() - started >= WINDOW - 1  # it waited for the reset...
    assert graph_answers(resource_graph) == [200, 200, 200]  # ...and was never throttled


def test_a_team_lookup_of_more_pages_than_the_quota_waits_for_the_reset(
    resource_graph: Emulator,
) -> None:
    resource_graph.register_resources(*vaults(PAGE_SIZE))  # with the group: two pages
    resource_graph.config(graph_quota_queries=1, graph_quota_window_seconds=WINDOW)

    rows = team_resources([(DEFAULT_SUBSCRIPTION, "rg-many")], "payments", [DEFAULT_SUBSCRIPTION])

    assert len(rows) == PAGE_SIZE + 1
    assert graph_answers(resource_graph) == [200, 200]


def test_a_query_answered_429_is_asked_again_after_the_reset(resource_graph: Emulator) -> None:
    [vault] = vaults(1)
    resource_graph.register_resources(vault)
    resource_graph.config(graph_quota_queries=1, graph_quota_window_seconds=WINDOW)
    use_up_the_quota(1)

    found = lookup([vault])

    assert list(found) == [vault.lower()]
    assert graph_answers(resource_graph) == [200, 429, 200]


def test_a_429_resetting_later_than_a_web_request_waits_fails_at_once_saying_why(
    resource_graph: Emulator,
) -> None:
    [vault] = vaults(1)
    resource_graph.register_resources(vault)
    resource_graph.config(graph_quota_queries=1, graph_quota_window_seconds=30)
    use_up_the_quota(1)
    started = time.monotonic()

    with pytest.raises(ScopeLookupUnavailable) as caught:
        lookup([vault])

    assert time.monotonic() - started < WEB_QUOTA_WAIT_SECONDS  # no sleep it could not use
    message = str(caught.value)
    assert "query quota is used up (Resource Graph answered 429)" in message
    assert "resets in 30 s" in message or "resets in 29 s" in message
    assert f"may still wait ({WEB_QUOTA_WAIT_SECONDS:.0f} s" in message
    assert graph_answers(resource_graph) == [200, 429]


def test_a_lookup_whose_quota_runs_out_mid_way_gives_up_before_the_next_chunk(
    resource_graph: Emulator,
) -> None:
    ids = vaults(2 * IDS_PER_QUERY + 1)
    resource_graph.register_resources(*ids)
    resource_graph.config(graph_quota_queries=2, graph_quota_window_seconds=30)
    started = time.monotonic()

    with pytest.raises(ScopeLookupUnavailable) as caught:
        lookup(ids)

    assert time.monotonic() - started < WEB_QUOTA_WAIT_SECONDS
    assert "query quota is used up (no query left)" in str(caught.value)
    assert graph_answers(resource_graph) == [200, 200]  # the third was not sent to be refused
