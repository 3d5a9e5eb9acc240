"""Registering a cluster: read its OIDC issuer and workload-identity flag from AKS.

The issuer URL is stored exactly as Azure reports it (trailing slash kept): the FIC issuer must
match the token's `iss` byte for byte. The cluster's own discovery document is read too and any
difference is reported, because that is precisely the mismatch that yields AADSTS70021 later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings

from identities.errors import DomainError
from identities.models import Cluster
from identities.services import config_object_save
from provisioning.azure import AzureGateway, get_gateway
from provisioning.errors import GatewayError, PermanentError
from provisioning.kubernetes import KubernetesGateway, connection_from_kubeconfig

logger = logging.getLogger(__name__)


class ClusterRefusedError(DomainError):
    """The cluster cannot host workload identities (no OIDC issuer or workload identity off)."""


@dataclass
class Registration:
    cluster: Cluster
    warnings: list[str] = field(default_factory=list)


def _discovery_issuer(gateway: AzureGateway, cluster: Cluster) -> str | None:
    kubeconfig = gateway.cluster_kubeconfig(
        subscription_id=cluster.subscription_id,
        resource_group=cluster.aks_resource_group,
        name=cluster.name,
    )
    with KubernetesGateway(connection_from_kubeconfig(kubeconfig, azure=gateway)) as kube:
        issuer = kube.issuer_discovery().get("issuer")
    return str(issuer) if issuer else None


def cluster_register(
    *,
    actor: Any,
    name: str,
    subscription_id: str,
    resource_group: str,
    cluster_resource_group: str = "",
    location: str = "",
    allowed_scope_subscriptions: list[str] | None = None,
    apply_service_account: bool = False,
    emulated: bool = False,
    gateway: AzureGateway | None = None,
) -> Registration:
    """Create or refresh a cluster from what AKS reports; refuse one without OIDC/workload id."""
    gateway = gateway or get_gateway()
    cluster = Cluster.objects.filter(name=name).first() or Cluster(name=name)
    cluster.subscription_id = subscription_id
    cluster.resource_group = resource_group
    cluster.cluster_resource_group = cluster_resource_group
    cluster.apply_service_account = apply_service_account
    cluster.emulated = emulated
    if allowed_scope_subscriptions is not None:
        cluster.allowed_scope_subscriptions = allowed_scope_subscriptions
    elif not cluster.allowed_scope_subscriptions:
        cluster.allowed_scope_subscriptions = [subscription_id]
    try:
        state = gateway.get_cluster(
            subscription_id=subscription_id,
            resource_group=cluster.aks_resource_group,
            name=name,
        )
    except GatewayError as error:
        raise ClusterRefusedError(f"cannot read AKS cluster {name}: {error.describe()}") from error
    if not state.oidc_issuer_enabled or not state.issuer_url:
        raise ClusterRefusedError(
            f"AKS cluster {name} has no OIDC issuer: enable it with "
            f"`az aks update -g {cluster.aks_resource_group} -n {name} --enable-oidc-issuer`."
        )
    if not state.workload_identity_enabled:
        raise ClusterRefusedError(
            f"AKS cluster {name} does not have workload identity enabled: run "
            f"`az aks update -g {cluster.aks_resource_group} -n {name} "
            "--enable-workload-identity`."
        )
    cluster.oidc_issuer_url = state.issuer_url
    cluster.workload_identity_enabled = True
    cluster.location = location or cluster.location or state.location
    registration = Registration(cluster=cluster)
    try:
        discovered = _discovery_issuer(gateway, cluster)
    except GatewayError as error:
        registration.warnings.append(
            f"could not read the cluster's own OIDC discovery document: {error.describe()}"
        )
    else:
        if discovered != state.issuer_url:
            registration.warnings.append(
                f"the cluster's discovery document names issuer {discovered!r} but AKS reports "
                f"{state.issuer_url!r}; tokens carry the former, so federated credentials built "
                "from the latter would fail with AADSTS70021."
            )
    config_object_save(actor=actor, instance=cluster)
    return registration


def sandbox_cluster_create(
    *, name: str, subscription_id: str, resource_group: str, location: str
) -> dict[str, Any]:
    """Emulator mode only: create the sandbox AKS cluster in the emulator (idempotent)."""
    if settings.AZURE_MODE != "emulator":
        raise PermanentError("sandbox clusters exist only in emulator mode")
    gateway = get_gateway()
    response = requests.post(
        f"{gateway.arm_url}/_emulator/clusters",
        json={
            "subscription_id": subscription_id,
            "resource_group": resource_group,
            "name": name,
            "location": location,
        },
        verify=gateway.connection_verify,
        timeout=30,
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def sandbox_resources_register(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Emulator mode only: add resources (`{"id", "location", "tags"}`) to the emulator's
    inventory, so role assignments on them are accepted as on real Azure (idempotent)."""
    if settings.AZURE_MODE != "emulator":
        raise PermanentError("the sandbox inventory exists only in emulator mode")
    gateway = get_gateway()
    response = requests.post(
        f"{gateway.arm_url}/_emulator/resources",
        json={"resources": resources},
        verify=gateway.connection_verify,
        timeout=30,
    )
    response.raise_for_status()
    registered: list[dict[str, Any]] = response.json()["value"]
    return registered
