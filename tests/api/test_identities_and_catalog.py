"""The identity inventory (drift, FIC usage n/20), decommission and repair; clusters, owned
namespaces and the role catalog."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import AuditEvent, Identity, IdentityRequest
from tests.support.people import FederatedCredentialFactory, IdentityFactory

pytestmark = pytest.mark.django_db


def test_the_inventory_shows_drift_and_federated_credential_usage(
    team: Any, other_team: Any, cluster: Any, requester: Any, client_for: Any
) -> None:
    ours = IdentityFactory(team=team, cluster=cluster, drift_state="drifted")
    for name in ("a", "b", "c"):
        FederatedCredentialFactory(identity=ours, service_account=name)
    FederatedCredentialFactory(identity=ours, service_account="gone", status="removed")
    IdentityFactory(team=other_team, cluster=cluster)

    body = client_for(requester).get("/api/v1/identities/").json()

    assert [row["id"] for row in body["results"]] == [ours.pk]
    row = body["results"][0]
    assert row["drift_state"] == "drifted"
    assert row["fic_usage"] == {"used": 3, "limit": 20}
    assert len(row["federated_credentials"]) == 4


def test_the_inventory_filters_by_drift_state(
    team: Any, cluster: Any, auditor: Any, client_for: Any
) -> None:
    IdentityFactory(team=team, cluster=cluster, drift_state="in_sync")
    drifted = IdentityFactory(team=team, cluster=cluster, drift_state="drifted")

    body = client_for(auditor).get("/api/v1/identities/", {"drift_state": "drifted"}).json()

    assert [row["id"] for row in body["results"]] == [drifted.pk]


def test_another_teams_identity_is_not_found(
    team: Any, cluster: Any, outsider: Any, client_for: Any
) -> None:
    theirs = IdentityFactory(team=team, cluster=cluster)
    response = client_for(outsider).get(f"/api/v1/identities/{theirs.pk}/")
    assert response.status_code == 404


def test_a_team_member_files_a_decommission_request(
    ready_request: IdentityRequest, teammate: Any, client_for: Any
) -> None:
    identity = ready_request.identity
    assert identity is not None

    response = client_for(teammate).post(
        f"/api/v1/identities/{identity.pk}/decommission/",
        {"justification": "Checkout is retired."},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["status"]) == ("decommission", "pending")
    assert body["identity"]["id"] == identity.pk
    assert response["Location"].endswith(f"/api/v1/identity-requests/{body['id']}/")


def test_repair_is_queued_for_a_ready_identity(
    ready_request: IdentityRequest,
    requester: Any,
    client_for: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    identity = ready_request.identity
    assert identity is not None
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(requester).post(f"/api/v1/identities/{identity.pk}/repair/")
    assert response.status_code == 202
    assert len(callbacks) == 1
    assert AuditEvent.objects.filter(identity=identity, action="identity.repair_requested").exists()


def test_repairing_an_identity_that_is_not_ready_is_a_conflict(
    team: Any, cluster: Any, requester: Any, client_for: Any
) -> None:
    identity = IdentityFactory(team=team, cluster=cluster, status=Identity.Status.PROVISIONING)
    response = client_for(requester).post(f"/api/v1/identities/{identity.pk}/repair/")
    assert response.status_code == 409


def test_clusters_and_the_namespaces_a_team_owns(
    cluster: Any, requester: Any, outsider: Any, client_for: Any
) -> None:
    clusters = client_for(requester).get("/api/v1/clusters/").json()
    ours = client_for(requester).get("/api/v1/clusters/aks-test/namespaces/").json()
    theirs = client_for(outsider).get("/api/v1/clusters/aks-test/namespaces/").json()
    unknown = client_for(requester).get("/api/v1/clusters/aks-nowhere/namespaces/")

    assert [c["name"] for c in clusters] == ["aks-test"]
    assert clusters[0]["oidc_issuer_url"] == cluster.oidc_issuer_url
    assert ours == {"cluster": "aks-test", "namespaces": ["payments", "payments-jobs"]}
    assert theirs["namespaces"] == ["search"]
    assert unknown.status_code == 404


def test_a_cluster_where_the_team_owns_nothing_is_not_found(
    requester: Any, client_for: Any, db: None
) -> None:
    from tests.support.people import ClusterFactory

    ClusterFactory(name="aks-elsewhere")
    response = client_for(requester).get("/api/v1/clusters/aks-elsewhere/namespaces/")
    assert response.status_code == 404


def test_the_role_catalog_lists_unprivileged_roles_first(
    catalog: Any, requester: Any, client_for: Any
) -> None:
    roles = client_for(requester).get("/api/v1/roles/").json()
    assert {"Key Vault Secrets User", "Contributor"} <= {r["name"] for r in roles}
    privileged = [r["privileged"] for r in roles]
    assert privileged == sorted(privileged)
