"""Registering clusters from what AKS (the emulator) reports."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

from identities.models import AuditEvent, Cluster
from provisioning.clusters import ClusterRefusedError, cluster_register
from tests.support.emulator import Emulator
from tests.support.people import SUBSCRIPTION

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def emulator_settings(emulator: Emulator):  # type: ignore[no-untyped-def]
    with override_settings(
        AZURE_MODE="emulator", EMULATOR_URL=emulator.url, EMULATOR_STATE_DIR=emulator.state_dir
    ):
        yield emulator


def register(name: str) -> Cluster:
    return cluster_register(
        actor=None,
        name=name,
        subscription_id=SUBSCRIPTION,
        resource_group="rg-identities",
        cluster_resource_group="rg-aks",
    ).cluster


def test_registration_stores_the_issuer_exactly_as_aks_reports_it(
    emulator_settings: Emulator,
) -> None:
    aks = emulator_settings.register_cluster(
        subscription_id=SUBSCRIPTION, resource_group="rg-aks", name="aks-prod"
    )

    cluster = register("aks-prod")

    assert cluster.oidc_issuer_url == aks["issuer_url"]
    assert cluster.oidc_issuer_url.endswith("/")
    assert cluster.workload_identity_enabled
    assert cluster.allowed_scope_subscriptions == [SUBSCRIPTION]
    assert AuditEvent.objects.filter(action__startswith="cluster.").exists()


def test_a_cluster_without_an_oidc_issuer_is_refused(emulator_settings: Emulator) -> None:
    emulator_settings.register_cluster(
        subscription_id=SUBSCRIPTION,
        resource_group="rg-aks",
        name="aks-legacy",
        oidc_issuer_enabled=False,
    )
    with pytest.raises(ClusterRefusedError, match="--enable-oidc-issuer"):
        register("aks-legacy")
    assert not Cluster.objects.filter(name="aks-legacy").exists()


def test_a_cluster_without_workload_identity_is_refused(emulator_settings: Emulator) -> None:
    emulator_settings.register_cluster(
        subscription_id=SUBSCRIPTION,
        resource_group="rg-aks",
        name="aks-nowi",
        workload_identity_enabled=False,
    )
    with pytest.raises(ClusterRefusedError, match="--enable-workload-identity"):
        register("aks-nowi")


def test_an_unknown_cluster_is_refused_with_the_azure_error(emulator_settings: Emulator) -> None:
    with pytest.raises(ClusterRefusedError, match="cannot read AKS cluster aks-missing"):
        register("aks-missing")


def test_seed_demo_registers_the_sandbox_cluster_with_the_emulator(
    emulator_settings: Emulator,
) -> None:
    call_command("seed_demo", "--force", stdout=StringIO(), stderr=StringIO())

    cluster = Cluster.objects.get(name="aks-sandbox")
    clusters = emulator_settings.control("GET", "clusters")["value"]
    [sandbox] = [c for c in clusters if c["name"] == "aks-sandbox"]
    assert cluster.oidc_issuer_url == sandbox["issuer_url"]
    # Each demo team's resources are in the emulator's inventory, assignable like Azure's.
    inventory = emulator_settings.control("GET", "resources?resourceGroup=rg-payments")["value"]
    assert {(row["type"], row["name"]) for row in inventory} >= {
        ("Microsoft.Storage/storageAccounts", "stpaymentsinvoices"),
        ("Microsoft.KeyVault/vaults", "kv-payments-checkout"),
        ("Microsoft.ServiceBus/namespaces", "sbns-payments-orders"),
        ("Microsoft.DocumentDB/databaseAccounts", "cosmos-payments-ledger"),
    }
    assert all(row["tags"]["team"] == "payments" for row in inventory)
    # Idempotent: a second run keeps the same cluster and issuer.
    call_command("seed_demo", "--force", stdout=StringIO(), stderr=StringIO())
    assert Cluster.objects.get(name="aks-sandbox").oidc_issuer_url == sandbox["issuer_url"]
