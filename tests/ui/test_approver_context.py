"""Approver context (issue 14, item 7): the approval card and the request page show, per role,
who owns the scope, whether Azure has it (from the policy's own cached Resource Graph lookup,
against the emulator over HTTPS), whether it is cross-team or protected, and the risk."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import unescape
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from identities import scope_lookup
from identities.models import IdentityRequest
from identities.policy import RoleDraft
from identities.scope_lookup import AzureResource
from identities.services import identity_request_create
from tests.support.emulator import Emulator
from tests.support.people import SUBSCRIPTION, VAULT_SCOPE, DraftFactory
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


def graph_queries(emulator: Emulator) -> int:
    return sum(1 for entry in emulator.requests() if entry["op"] == "graph.query")


def everything_exists(ids: Sequence[str]) -> Mapping[str, AzureResource]:
    """A lookup that finds every scope (files a request the real inventory would refuse)."""
    return {
        scope.lower(): AzureResource(
            id=scope,
            type="",
            name=scope.rsplit("/", 1)[-1],
            subscription_id=SUBSCRIPTION,
            resource_group="",
        )
        for scope in ids
    }


def file_while_everything_exists(requester: Any, draft: Any) -> IdentityRequest:
    with (
        override_settings(SCOPE_EXISTENCE_CHECK=True),
        scope_lookup.looking_up_with(everything_exists),
    ):
        return identity_request_create(requester=requester, draft=draft)


def contexts(html: str) -> list[dict[str, str]]:
    """Each rendered scope context: its owner, existence, risk and badges."""
    found = []
    for block in re.findall(r'<ul class="small scope-context".*?</ul>', html, flags=re.S):
        owner = re.search(r'data-testid="scope-owner">([^<]*)<', block)
        existence = re.search(
            r'data-existence="([^"]+)">([^<]*)</span> <span data-testid="scope-existence-note">'
            r"([^<]*)<",
            block,
        )
        risk = re.search(r'data-risk="([^"]+)"', block)
        assert owner and existence and risk, block
        found.append(
            {
                "owner": owner.group(1),
                "existence": existence.group(1),
                "existence_label": existence.group(2),
                "existence_note": existence.group(3),
                "risk": risk.group(1),
                "cross_team": "scope-cross-team" in block,
                "protected": "scope-protected" in block,
                "text": unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", block))),
            }
        )
    return found


def both_pages(client: Any, identity_request: IdentityRequest) -> tuple[dict[str, str], ...]:
    """The scope context on the approval card and on the request page (one role each)."""
    queue = client.get(reverse("approval_queue") + "?show=all")
    page = client.get(reverse("request_detail", args=[identity_request.pk]))
    assert queue.status_code == page.status_code == 200
    [on_card] = contexts(queue.content.decode())
    [on_page] = contexts(page.content.decode())
    return on_card, on_page


def test_a_scope_that_exists_in_the_teams_own_group_is_low_risk_on_card_and_page(
    resource_graph: Emulator,
    client_for: ClientFor,
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
) -> None:
    resource_graph.register_resources(VAULT_SCOPE)
    identity_request = identity_request_create(requester=requester, draft=make_draft())
    asked = graph_queries(resource_graph)

    for shown in both_pages(client_for(approver), identity_request):
        assert shown["existence"] == "exists"
        assert shown["existence_note"] == "exists in Azure"
        assert shown["existence_label"] == "exists"
        assert shown["owner"] == "resource group of team payments (the requesting team)"
        assert shown["risk"] == "low"
        assert not shown["cross_team"] and not shown["protected"]
    # Filing asked Azure; the two page views answered from the policy's cache.
    assert graph_queries(resource_graph) == asked


def test_a_scope_gone_from_azure_is_shown_missing_and_refused(
    resource_graph: Emulator,
    client_for: ClientFor,
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
) -> None:
    identity_request = file_while_everything_exists(requester, make_draft())

    for shown in both_pages(client_for(approver), identity_request):
        assert shown["existence"] == "not_found"
        assert VAULT_SCOPE in shown["existence_note"]
        assert shown["existence_label"] == "not found"
        assert shown["risk"] == "blocked"
        assert "refused by policy" in shown["text"]
        assert "does not exist in Azure" in shown["text"]


def test_a_scope_azure_could_not_check_is_shown_unverified_with_the_reason(
    resource_graph: Emulator,
    client_for: ClientFor,
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
) -> None:
    resource_graph.config(fault_rate_500=1.0, fault_ops=["graph.query"])
    identity_request = identity_request_create(requester=requester, draft=make_draft())

    for shown in both_pages(client_for(approver), identity_request):
        assert shown["existence"] == "unverified"
        assert shown["existence_note"].startswith("could not be checked in Azure (")
        assert shown["existence_label"] == "unverified"
        assert shown["risk"] == "medium"
        assert "Approval checks again" in shown["text"]


def test_a_scope_in_another_teams_group_is_cross_team_and_high_risk(
    resource_graph: Emulator,
    client_for: ClientFor,
    outsider: Any,
    approver: Any,
    make_draft: DraftFactory,
) -> None:
    resource_graph.register_resources(VAULT_SCOPE)
    identity_request = identity_request_create(
        requester=outsider,
        draft=make_draft(
            team="search", namespace="search", app_name="indexer", service_account="indexer"
        ),
    )

    for shown in both_pages(client_for(approver), identity_request):
        assert shown["existence"] == "exists"
        assert shown["owner"] == "resource group of team payments"
        assert shown["cross_team"]
        assert "team payments owns it and must approve too" in shown["text"]
        assert shown["risk"] == "high"
        assert not shown["protected"]


def test_a_resource_tagged_for_another_team_is_cross_team_by_its_tag(
    resource_graph: Emulator,
    client_for: ClientFor,
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
) -> None:
    resource_graph.register_resources(VAULT_SCOPE, tags={"owner-team": "search"})
    identity_request = identity_request_create(requester=requester, draft=make_draft())

    for shown in both_pages(client_for(approver), identity_request):
        assert shown["owner"] == (
            "resource group of team payments (the requesting team); tagged owner-team=search"
        )
        assert shown["cross_team"]
        assert "team search owns it" in shown["text"]
        assert shown["risk"] == "high"


def test_a_scope_that_became_protected_is_shown_protected_and_refused(
    resource_graph: Emulator,
    client_for: ClientFor,
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
) -> None:
    resource_graph.register_resources(VAULT_SCOPE)
    identity_request = identity_request_create(requester=requester, draft=make_draft())

    # rg-payments is declared a home of the portal's identities after filing.
    protected = [f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"]
    with override_settings(PROTECTED_RESOURCE_GROUPS=protected):
        shown_both = both_pages(client_for(approver), identity_request)

    for shown in shown_both:
        assert shown["protected"]
        assert shown["risk"] == "blocked"
        assert "holds the portal's managed identities" in shown["text"]
        assert shown["existence"] == "exists"


def test_the_requester_sees_the_same_context_on_the_request_page(
    resource_graph: Emulator,
    client_for: ClientFor,
    requester: Any,
    make_draft: DraftFactory,
) -> None:
    resource_graph.register_resources(VAULT_SCOPE)
    draft = make_draft(
        roles=(RoleDraft("Key Vault Secrets User", VAULT_SCOPE),),
    )
    identity_request = identity_request_create(requester=requester, draft=draft)

    page = client_for(requester).get(reverse("request_detail", args=[identity_request.pk]))
    [shown] = contexts(page.content.decode())
    assert shown["existence"] == "exists"
    assert shown["risk"] == "low"


def test_the_request_page_of_another_team_stays_hidden(
    resource_graph: Emulator,
    client_for: ClientFor,
    requester: Any,
    outsider: Any,
    make_draft: DraftFactory,
) -> None:
    resource_graph.register_resources(VAULT_SCOPE)
    identity_request = identity_request_create(requester=requester, draft=make_draft())

    assert (
        client_for(outsider).get(reverse("request_detail", args=[identity_request.pk])).status_code
        == 404
    )
    anonymous = Client().get(reverse("request_detail", args=[identity_request.pk]))
    assert anonymous.status_code == 302
