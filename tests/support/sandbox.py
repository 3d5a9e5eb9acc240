"""A portal cluster wired to an emulator sandbox cluster, with the gateway pointed at it.

`sandbox` gives the engine and the worker processes everything they need to provision against
the emulator over HTTPS: the DB `cluster` carries the emulator's issuer URL, settings (and the
environment handed to workers) name the emulator's URL and state directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.test import override_settings

from identities.models import Cluster, IdentityRequest
from identities.services import identity_request_approve, identity_request_create
from tests.support.emulator import Emulator
from tests.support.people import (
    RESOURCE_GROUP_SCOPE,
    STORAGE_SCOPE,
    SUBSCRIPTION,
    VAULT_SCOPE,
    DraftFactory,
)

AKS_RESOURCE_GROUP = "rg-aks"


if TYPE_CHECKING:
    from provisioning.kubernetes import ClusterConnection


@dataclass
class Sandbox:
    emulator: Emulator
    cluster: Cluster
    aks: dict[str, Any]

    @property
    def worker_env(self) -> dict[str, str]:
        """Environment for worker processes: the same emulator and quick retries."""
        return {
            "AZURE_MODE": "emulator",
            "EMULATOR_URL": self.emulator.url,
            "EMULATOR_STATE_DIR": str(self.emulator.state_dir),
            "PROVISIONING_BACKOFF_SECONDS": "0.05",
            "PROVISIONING_BACKOFF_MAX_SECONDS": "2",
            "PROVISIONING_THROTTLE_BUDGET_SECONDS": "30",
        }

    def cluster_connection(self) -> ClusterConnection:
        """The sandbox cluster's API server, as the portal reaches it: its kubeconfig from AKS
        (listClusterUserCredential through the Azure gateway)."""
        from provisioning.azure import get_gateway
        from provisioning.kubernetes import connection_from_kubeconfig

        gateway = get_gateway()
        kubeconfig = gateway.cluster_kubeconfig(
            subscription_id=self.cluster.subscription_id,
            resource_group=self.cluster.aks_resource_group,
            name=self.cluster.name,
        )
        return connection_from_kubeconfig(kubeconfig, azure=gateway)

    def arm(self) -> dict[str, Any]:
        """The emulator's resources: identities, fics (by identity), role_assignments."""
        state: dict[str, Any] = self.emulator.control("GET", "state")
        return state

    def arm_writes(self, since: int = 0) -> list[dict[str, Any]]:
        """ARM writes (PUT/PATCH/DELETE outside the control API) the emulator has served."""
        return [
            entry
            for entry in self.emulator.requests(since)
            if entry["method"] in {"PUT", "PATCH", "DELETE"}
            and not entry["path"].startswith("/_emulator")
            and "/k8s/" not in entry["path"]
        ]


def top_level_resource(scope: str) -> str:
    """The subscription, resource group or top-level resource a role scope lives in."""
    parts = scope.strip("/").split("/")
    return "/" + "/".join(parts[:8])


@pytest.fixture
def sandbox(emulator: Emulator, cluster: Cluster) -> Iterator[Sandbox]:
    # The resources the tests' standard scopes name (with their subscription and resource
    # group); those a request names are registered when it is filed (approved_request).
    emulator.register_resources(VAULT_SCOPE, STORAGE_SCOPE, RESOURCE_GROUP_SCOPE)
    aks = emulator.register_cluster(
        subscription_id=SUBSCRIPTION,
        resource_group=AKS_RESOURCE_GROUP,
        name=cluster.name,
        location=cluster.location,
    )
    Cluster.objects.filter(pk=cluster.pk).update(
        oidc_issuer_url=aks["issuer_url"],
        cluster_resource_group=AKS_RESOURCE_GROUP,
        emulated=True,
        apply_service_account=True,
    )
    cluster.refresh_from_db()
    with override_settings(
        AZURE_MODE="emulator",
        EMULATOR_URL=emulator.url,
        EMULATOR_STATE_DIR=emulator.state_dir,
        PROVISIONING_BACKOFF_SECONDS=0.05,
        PROVISIONING_BACKOFF_MAX_SECONDS=2.0,
        PROVISIONING_THROTTLE_BUDGET_SECONDS=30.0,
    ):
        yield Sandbox(emulator=emulator, cluster=cluster, aks=aks)


@pytest.fixture
def resource_graph(emulator: Emulator, tmp_path: Path) -> Iterator[Emulator]:
    """The existence check on, asking the emulator's Resource Graph (over HTTPS, the real SDK),
    with an empty lookup cache of its own. Register what should exist with `register_resources`."""
    cache_folder = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache"}
    with override_settings(
        CACHES={"default": {**cache_folder, "LOCATION": str(tmp_path / "cache")}},
        AZURE_MODE="emulator",
        EMULATOR_URL=emulator.url,
        EMULATOR_STATE_DIR=emulator.state_dir,
        SCOPE_EXISTENCE_CHECK=True,
    ):
        yield emulator


@pytest.fixture(scope="session", autouse=True)
def reconcile_pool_closed(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The engine's pool threads keep DB connections; close them before the test database is
    dropped (fixtures tear down in reverse order, so this runs first)."""
    yield
    from provisioning.reconcile import pool_shutdown

    with django_db_blocker.unblock():
        pool_shutdown()


ApprovedRequestFactory = Callable[..., IdentityRequest]


@pytest.fixture
def approved_request(
    sandbox: Sandbox, requester: Any, approver: Any, make_draft: DraftFactory
) -> ApprovedRequestFactory:
    """File a request as the requester and approve it; provisioning is left to the caller."""

    def make(**draft_overrides: Any) -> IdentityRequest:
        draft = make_draft(**draft_overrides)
        # The resources the roles are on exist in Azure (the emulator's inventory).
        scopes = {top_level_resource(role.scope) for role in draft.roles}
        if scopes:
            sandbox.emulator.register_resources(*sorted(scopes))
        identity_request = identity_request_create(requester=requester, draft=draft)
        identity_request_approve(identity_request=identity_request, approver=approver)
        identity_request.refresh_from_db()
        return identity_request

    return make
