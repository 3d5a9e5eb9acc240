"""Reads a ready request into the hand-over spec (manifests, az CLI, Terraform, troubleshooting)."""

from __future__ import annotations

from django.conf import settings

from identities.errors import ConflictError
from identities.manifests import PUBLIC_CLOUD_AUTHORITY, HandoverSpec, RoleAssignmentSpec
from identities.models import ChildStatus, IdentityRequest, RequestKind, RequestStatus
from identities.validators import canonical_arm_id


def handover_spec_for(identity_request: IdentityRequest) -> HandoverSpec:
    """The spec of a ready request's ServiceAccount on its identity (shared roles included).

    ConflictError while the request is not ready, or for a decommission request.
    """
    if identity_request.kind == RequestKind.DECOMMISSION:
        raise ConflictError("A decommission request has nothing to hand over.")
    if identity_request.kind == RequestKind.CHANGE_ROLES:
        raise ConflictError(
            "A change of roles hands over nothing new: the identity's ServiceAccounts and client "
            "id stay as they were; see the requests that federated them."
        )
    if identity_request.status != RequestStatus.READY or identity_request.identity is None:
        raise ConflictError(
            f"request {identity_request.pk} is {identity_request.status}; the hand-over is "
            "available once it is ready."
        )
    identity = identity_request.identity
    cluster = identity.cluster
    fic = (
        identity.federated_credentials.filter(
            namespace=identity_request.namespace,
            service_account=identity_request.service_account,
        )
        .exclude(status=ChildStatus.REMOVED)
        .first()
    )
    if fic is None:
        raise ConflictError(
            f"identity {identity.name} has no federated credential for "
            f"{identity_request.namespace}/{identity_request.service_account} any more."
        )
    assignments = identity.role_assignments.filter(status=ChildStatus.ACTIVE).select_related("role")
    authority = PUBLIC_CLOUD_AUTHORITY
    if settings.AZURE_MODE == "azure":
        authority = settings.AZURE_AUTHORITY_HOST.rstrip("/") + "/"
    return HandoverSpec(
        app_name=identity_request.app_name,
        namespace=identity_request.namespace,
        service_account=identity_request.service_account,
        client_id=identity.client_id,
        tenant_id=identity.tenant_id,
        principal_id=identity.principal_id,
        identity_name=identity.name,
        # Ids leave the portal in canonical casing: ARM answers `/resourcegroups/`, which the
        # azurerm provider refuses on import (identities.validators.canonical_arm_id).
        identity_resource_id=canonical_arm_id(
            identity.resource_id or identity.expected_resource_id
        ),
        subscription_id=identity.subscription_id,
        resource_group=identity.resource_group,
        location=identity.location,
        cluster_name=cluster.name,
        cluster_resource_group=cluster.aks_resource_group,
        oidc_issuer_url=fic.issuer,
        fic_name=fic.name,
        fic_subject=fic.subject,
        audience=fic.audience,
        role_assignments=tuple(
            RoleAssignmentSpec(
                role_name=assignment.role.name,
                role_definition_guid=assignment.role.role_definition_guid,
                scope=canonical_arm_id(assignment.scope),
                name=assignment.name,
            )
            for assignment in assignments
        ),
        tags=dict(identity.tags),
        authority_host=authority,
    )
