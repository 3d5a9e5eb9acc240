"""The lists added after the first round cost the same number of queries for 2N rows as for N
(no N+1): change requests, access reviews and their items, ownership transfers, the
notifications inbox, webhook endpoints and their delivery log, and the audit log filtered, in
the API and on the web pages that show them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from identities.audit import audit_record
from identities.models import (
    AccessReviewAttestation,
    AccessReviewCampaign,
    AccessReviewItem,
    CatalogRole,
    Cluster,
    Identity,
    IdentityRequest,
    Notification,
    OwnershipTransfer,
    RequestedRole,
    RoleChange,
    Team,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.support.people import STORAGE_SCOPE, VAULT_SCOPE, IdentityFactory

pytestmark = pytest.mark.django_db

N = 6  # rows at first; then 2N. Both fit on one page of every list below.


@dataclass
class Listing:
    """A list to measure: where it is, with which query string, and how to add `count` rows."""

    url: Callable[[], str]
    seed: Callable[[int], None]
    params: Callable[[], dict[str, Any]] = field(default=lambda: {})


def _identity(team: Team, cluster: Cluster, catalog: dict[str, CatalogRole]) -> Identity:
    identity = IdentityFactory(team=team, cluster=cluster)
    identity.role_assignments.create(
        role=catalog["Key Vault Secrets User"], scope=VAULT_SCOPE, status="active"
    )
    return identity


@pytest.fixture
def change_requests(
    requester: Any, team: Team, cluster: Cluster, catalog: dict[str, CatalogRole]
) -> Listing:
    """Change-of-roles requests, each adding one role and removing another."""

    def seed(count: int) -> None:
        for _ in range(count):
            identity = _identity(team, cluster, catalog)
            change = IdentityRequest.objects.create(
                kind="change_roles",
                identity=identity,
                app_name=identity.app_name,
                team=team,
                cluster=cluster,
                justification="More access.",
                requester=requester,
                status="pending",
            )
            RequestedRole.objects.create(
                identity_request=change,
                role=catalog["Storage Blob Data Reader"],
                scope=STORAGE_SCOPE,
                change=RoleChange.ADD,
            )
            RequestedRole.objects.create(
                identity_request=change,
                role=catalog["Key Vault Secrets User"],
                scope=VAULT_SCOPE,
                change=RoleChange.REMOVE,
            )

    return Listing(
        url=lambda: "/api/v1/identity-requests/",
        params=lambda: {"kind": "change_roles"},
        seed=seed,
    )


@pytest.fixture
def review_campaigns(
    approver: Any, team: Team, cluster: Cluster, catalog: dict[str, CatalogRole]
) -> Listing:
    """Access review campaigns with one item of the requester's team each."""

    def seed(count: int) -> None:
        for _ in range(count):
            campaign = AccessReviewCampaign.objects.create(
                name=f"review {uuid.uuid4().hex[:6]}",
                opened_by=approver,
                due_at=timezone.now() + timedelta(days=30),
                filter_team=team,
                item_count=1,
            )
            identity = _identity(team, cluster, catalog)
            AccessReviewItem.objects.create(
                campaign=campaign, identity=identity, team=team, identity_name=identity.name
            )

    return Listing(url=lambda: "/api/v1/access-reviews/", seed=seed)


@pytest.fixture
def review_items(
    approver: Any, requester: Any, team: Team, cluster: Cluster, catalog: dict[str, CatalogRole]
) -> Listing:
    """One campaign; items with roles, each attested once (with its audit row)."""
    campaign = AccessReviewCampaign.objects.create(
        name="Q4", opened_by=approver, due_at=timezone.now() + timedelta(days=30)
    )

    def seed(count: int) -> None:
        for _ in range(count):
            identity = _identity(team, cluster, catalog)
            item = AccessReviewItem.objects.create(
                campaign=campaign,
                identity=identity,
                team=team,
                identity_name=identity.name,
                roles=[{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}],
            )
            AccessReviewAttestation.objects.create(
                item=item,
                attester=requester,
                decision="keep",
                audit_event=audit_record(
                    actor=requester, action="access_review.attested", identity=identity
                ),
            )

    return Listing(url=lambda: f"/api/v1/access-reviews/{campaign.pk}/items/", seed=seed)


@pytest.fixture
def review_page(review_items: Listing) -> Listing:
    """The web page of that campaign, which lists its items."""
    campaign_id = review_items.url().split("/")[-3]
    return Listing(
        url=lambda: f"/access-reviews/{campaign_id}/",
        params=lambda: {"show": "all"},  # attested items are no longer "to review"
        seed=review_items.seed,
    )


@pytest.fixture
def transfers(
    requester: Any,
    team: Team,
    other_team: Team,
    cluster: Cluster,
    catalog: dict[str, CatalogRole],
) -> Listing:
    def seed(count: int) -> None:
        for _ in range(count):
            OwnershipTransfer.objects.create(
                identity=_identity(team, cluster, catalog),
                from_team=team,
                to_team=other_team,
                requested_by=requester,
                justification="They run it now.",
            )

    return Listing(url=lambda: "/api/v1/ownership-transfers/", seed=seed)


@pytest.fixture
def inbox(requester: Any, team: Team, cluster: Cluster, catalog: dict[str, CatalogRole]) -> Listing:
    """In-portal notifications about the requester's requests and identities."""

    def seed(count: int) -> None:
        for index in range(count):
            identity = _identity(team, cluster, catalog)
            identity_request = IdentityRequest.objects.create(
                app_name=identity.app_name,
                team=team,
                cluster=cluster,
                namespace="payments",
                service_account=identity.app_name,
                justification="Load.",
                requester=requester,
                identity=identity,
                status="ready",
            )
            Notification.objects.create(
                key=uuid.uuid4().hex,
                event="request_ready",
                channel="inbox",
                recipient=requester,
                identity_request=identity_request,
                identity=identity,
                data={"app_name": identity.app_name},
                status="delivered",
                read_at=timezone.now() if index % 2 else None,
            )

    return Listing(url=lambda: "/inbox/", seed=seed)


def _endpoint(team: Team, requester: Any) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        team=team,
        url=f"https://hooks.example.com/{uuid.uuid4().hex[:8]}",
        events=["request_filed", "request_ready"],
        secret="whsec_" + uuid.uuid4().hex,
        created_by=requester,
    )


@pytest.fixture
def webhooks(requester: Any, team: Team) -> Listing:
    def seed(count: int) -> None:
        for _ in range(count):
            _endpoint(team, requester)

    return Listing(url=lambda: "/api/v1/webhooks/", seed=seed)


@pytest.fixture
def deliveries(requester: Any, team: Team) -> Listing:
    """One endpoint's delivery log: attempts of webhook notifications, some failed."""
    endpoint = _endpoint(team, requester)

    def seed(count: int) -> None:
        for index in range(count):
            notification = Notification.objects.create(
                key=uuid.uuid4().hex, event="request_filed", channel="webhook", endpoint=endpoint
            )
            WebhookDelivery.objects.create(
                endpoint=endpoint,
                notification=notification,
                status_code=200 if index % 2 else None,
                error="" if index % 2 else "connection refused",
            )

    return Listing(url=lambda: f"/api/v1/webhooks/{endpoint.pk}/deliveries/", seed=seed)


@pytest.fixture
def delivery_page(deliveries: Listing) -> Listing:
    """The endpoint's web page, which shows its delivery log."""
    endpoint_id = deliveries.url().split("/")[-3]
    return Listing(url=lambda: f"/webhooks/{endpoint_id}/", seed=deliveries.seed)


@pytest.fixture
def filtered_audit(
    requester: Any, team: Team, cluster: Cluster, catalog: dict[str, CatalogRole]
) -> Listing:
    """Audit rows about one of the team's requests, and others the filters leave out."""
    identity = _identity(team, cluster, catalog)
    identity_request = IdentityRequest.objects.create(
        app_name=identity.app_name,
        team=team,
        cluster=cluster,
        namespace="payments",
        service_account=identity.app_name,
        justification="Load.",
        requester=requester,
        identity=identity,
        status="ready",
    )

    def seed(count: int) -> None:
        for _ in range(count):
            audit_record(
                actor=requester,
                action="load.filtered",
                identity_request=identity_request,
                identity=identity,
            )
            audit_record(actor=requester, action="load.other", identity_request=identity_request)

    return Listing(
        url=lambda: "/api/v1/audit-events/",
        params=lambda: {
            "action": "load.filtered",
            "identity_request": identity_request.pk,
            "team": team.name,
            "actor": requester.username,
        },
        seed=seed,
    )


@pytest.fixture
def filtered_audit_page(filtered_audit: Listing) -> Listing:
    return Listing(url=lambda: "/audit/", params=filtered_audit.params, seed=filtered_audit.seed)


def rows_of(response: Any) -> int:
    """The rows a list response shows: the API's page (or bare list), a web page's page."""
    if response["Content-Type"].startswith("application/json"):
        body = response.json()
        return len(body["results"] if isinstance(body, dict) else body)
    context = response.context
    for key in ("page_obj", "items", "deliveries", "rows"):
        if key in context:
            return len(list(context[key]))
    raise AssertionError(f"no rows found in the context of {response.request['PATH_INFO']}")


def fetch(client: Any, listing: Listing) -> tuple[int, int]:
    """(queries, rows) of one GET of the listing."""
    params = {**listing.params()}
    if listing.url().startswith("/api/"):
        params["page_size"] = 100
    with CaptureQueriesContext(connection) as captured:
        response = client.get(listing.url(), params)
    assert response.status_code == 200, response.content[:500]
    return len(captured), rows_of(response)


@pytest.mark.parametrize(
    ("listing", "who"),
    [
        ("change_requests", "requester"),
        ("change_requests", "approver"),
        ("review_campaigns", "requester"),
        ("review_campaigns", "auditor"),
        ("review_items", "requester"),
        ("review_items", "auditor"),
        ("review_page", "requester"),
        ("transfers", "requester"),
        ("transfers", "approver"),
        ("inbox", "requester"),
        ("webhooks", "requester"),
        ("deliveries", "requester"),
        ("delivery_page", "requester"),
        ("filtered_audit", "auditor"),  # the API's global log is the auditors'
        ("filtered_audit_page", "requester"),
        ("filtered_audit_page", "auditor"),
    ],
)
def test_a_list_costs_the_same_queries_for_n_and_2n_rows(
    listing: str, who: str, request: pytest.FixtureRequest, client_for: Any
) -> None:
    seeded: Listing = request.getfixturevalue(listing)
    client = client_for(request.getfixturevalue(who))
    seeded.seed(N)
    few_queries, few_rows = fetch(client, seeded)

    seeded.seed(N)
    many_queries, many_rows = fetch(client, seeded)

    assert (few_rows, many_rows) == (N, 2 * N)
    assert many_queries == few_queries
