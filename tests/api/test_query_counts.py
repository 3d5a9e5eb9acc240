"""List endpoints cost the same number of queries for 50 rows as for 5 (no N+1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tokens import api_token_create
from identities.audit import audit_record
from identities.models import (
    Approval,
    CatalogRole,
    ChildStatus,
    Cluster,
    IdentityRequest,
    RequestedRole,
    RoleAssignment,
    Team,
)
from tests.support.people import (
    STORAGE_SCOPE,
    VAULT_SCOPE,
    FederatedCredentialFactory,
    IdentityFactory,
)

pytestmark = pytest.mark.django_db

Seeder = Callable[[int], None]


@pytest.fixture
def seed_requests(
    requester: Any, approver: Any, team: Team, cluster: Cluster, catalog: dict[str, CatalogRole]
) -> Seeder:
    """Requests with two roles and an approval each, and an identity on every other one."""

    def seed(count: int) -> None:
        for index in range(count):
            identity = None
            if index % 2:
                identity = IdentityFactory(team=team, cluster=cluster)
            identity_request = IdentityRequest.objects.create(
                app_name=f"app-{index}",
                team=team,
                cluster=cluster,
                namespace="payments",
                service_account=f"sa-{index}",
                justification="Load.",
                requester=requester,
                identity=identity,
                status="approved" if identity else "pending",
            )
            for role, scope in (
                ("Key Vault Secrets User", VAULT_SCOPE),
                ("Storage Blob Data Reader", STORAGE_SCOPE),
            ):
                RequestedRole.objects.create(
                    identity_request=identity_request, role=catalog[role], scope=scope
                )
            Approval.objects.create(
                identity_request=identity_request, approver=approver, decision="approve"
            )
            audit_record(actor=requester, action="load.seeded", identity_request=identity_request)

    return seed


@pytest.fixture
def seed_identities(team: Team, cluster: Cluster, catalog: dict[str, CatalogRole]) -> Seeder:
    def seed(count: int) -> None:
        for _ in range(count):
            identity = IdentityFactory(team=team, cluster=cluster)
            FederatedCredentialFactory(identity=identity)
            FederatedCredentialFactory(identity=identity, status=ChildStatus.REMOVED)
            RoleAssignment.objects.create(
                identity=identity, role=catalog["Key Vault Secrets User"], scope=VAULT_SCOPE
            )

    return seed


@pytest.fixture
def seed_tokens(requester: Any) -> Seeder:
    def seed(count: int) -> None:
        for index in range(count):
            api_token_create(user=requester, name=f"t{index}", scopes=["read"], expires_at=None)

    return seed


def queries_for(client: Any, url: str) -> tuple[int, int]:
    """(queries, rows) of one GET."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, {"page_size": 100})
    assert response.status_code == 200, response.content
    return len(captured), len(response.json()["results"])


@pytest.mark.parametrize(
    ("url", "seeder", "who"),
    [
        ("/api/v1/identity-requests/", "seed_requests", "requester"),
        ("/api/v1/identity-requests/", "seed_requests", "approver"),
        ("/api/v1/identities/", "seed_identities", "requester"),
        ("/api/v1/identities/", "seed_identities", "auditor"),
        ("/api/v1/audit-events/", "seed_requests", "auditor"),
        ("/api/v1/tokens/", "seed_tokens", "requester"),
    ],
)
def test_a_list_costs_the_same_queries_for_5_and_50_rows(
    url: str,
    seeder: str,
    who: str,
    request: pytest.FixtureRequest,
    client_for: Any,
    django_assert_num_queries: Any,
) -> None:
    seed: Seeder = request.getfixturevalue(seeder)
    client = client_for(request.getfixturevalue(who))
    seed(5)
    few_queries, few_rows = queries_for(client, url)

    seed(45)
    with django_assert_num_queries(few_queries):
        response = client.get(url, {"page_size": 100})

    assert few_rows >= 5
    assert len(response.json()["results"]) >= 50


def test_a_request_audit_trail_costs_the_same_for_5_and_50_events(
    seed_requests: Seeder,
    requester: Any,
    client_for: Any,
    django_assert_num_queries: Any,
) -> None:
    seed_requests(1)
    identity_request = IdentityRequest.objects.get()
    url = f"/api/v1/identity-requests/{identity_request.pk}/audit/"
    for _ in range(4):
        audit_record(actor=requester, action="load.more", identity_request=identity_request)
    client = client_for(requester)
    few_queries, few_rows = queries_for(client, url)

    for _ in range(45):
        audit_record(actor=requester, action="load.more", identity_request=identity_request)
    with django_assert_num_queries(few_queries):
        response = client.get(url, {"page_size": 100})

    assert (few_rows, len(response.json()["results"])) == (5, 50)
