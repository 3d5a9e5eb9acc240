"""After a decommission: withdraw what the portal applied to the identity's ServiceAccounts.

On a cluster where the portal applies ServiceAccounts (`Cluster.apply_service_account`), it owns
the client-id annotation through server-side apply under its field manager. Applying the same
ServiceAccount again with no labels or annotations removes every field that manager applied
before and leaves out now, unless another manager also owns it (a team's own `kubectl apply`),
so nothing the team wrote is touched. Kubernetes documents this: "If you remove a field from a
manifest and apply that manifest, Server-Side Apply checks if there are any other field managers
that also own the field. If the field is not owned by any other field managers, it is either
deleted from the live object..." (https://kubernetes.io/docs/reference/using-api/server-side-apply/
, "Field management").
"""

from __future__ import annotations

import logging

from identities.manifests import CLIENT_ID_ANNOTATION
from identities.models import IdentityRequest, IdentityStatus, RequestKind, RequestStatus
from provisioning.azure import get_gateway
from provisioning.errors import GatewayError
from provisioning.kubernetes import KubernetesGateway, connection_from_kubeconfig
from provisioning.services import service_account_record_released

logger = logging.getLogger(__name__)


def identity_release_service_accounts(*, identity_request_id: int) -> list[tuple[str, str]]:
    """For a finished decommission on a portal-applied cluster, remove the portal's fields from
    each ServiceAccount the identity was federated with; returns those whose client-id
    annotation is gone. Idempotent: a second run applies the same empty configuration."""
    identity_request = (
        IdentityRequest.objects.select_related("identity", "cluster")
        .filter(
            pk=identity_request_id,
            kind=RequestKind.DECOMMISSION,
            status=RequestStatus.READY,
            identity__status=IdentityStatus.DECOMMISSIONED,
        )
        .first()
    )
    if identity_request is None or not identity_request.cluster.apply_service_account:
        return []
    identity = identity_request.identity
    if identity is None:
        return []
    accounts = sorted(
        set(identity.federated_credentials.values_list("namespace", "service_account"))
    )
    cluster = identity_request.cluster
    gateway = get_gateway()
    released: list[tuple[str, str]] = []
    try:
        kubeconfig = gateway.cluster_kubeconfig(
            subscription_id=cluster.subscription_id,
            resource_group=cluster.aks_resource_group,
            name=cluster.name,
        )
        with KubernetesGateway(connection_from_kubeconfig(kubeconfig, azure=gateway)) as kube:
            for namespace, service_account in accounts:
                if kube.get_service_account(namespace=namespace, name=service_account) is None:
                    continue  # deleted by the team: nothing of ours is left on it
                live = kube.apply_service_account(
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": service_account, "namespace": namespace},
                    }
                )
                annotations = (live.get("metadata") or {}).get("annotations") or {}
                removed = CLIENT_ID_ANNOTATION not in annotations
                service_account_record_released(
                    identity_request=identity_request,
                    namespace=namespace,
                    service_account=service_account,
                    annotation_removed=removed,
                )
                if removed:
                    released.append((namespace, service_account))
    except GatewayError as error:
        # The decommission itself is done; the page still lists the manual clean-up.
        logger.warning(
            "releasing the ServiceAccounts of request %s failed: %s",
            identity_request.pk,
            error.describe(),
        )
    return released
