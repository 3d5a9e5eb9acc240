"""Drift: compare each ready identity with Azure, record what differs; repair reruns reconcile.

Drift is: the identity gone, a federated credential missing or changed, a role assignment
missing, or a role assignment on the principal that the portal did not make (privilege creep).
Repair restores what is missing or changed and removes role assignments made outside the portal:
for the identities it manages the portal is the source of truth.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.models import (
    CatalogRole,
    ChildStatus,
    DriftState,
    Identity,
    IdentityRequest,
    NotificationEvent,
    RequestKind,
)
from identities.services import notifications_record
from provisioning import metrics, reconcile
from provisioning.azure import AzureGateway, get_gateway, subscription_of
from provisioning.errors import GatewayError

logger = logging.getLogger(__name__)


def _scopes_to_search(identity: Identity) -> set[str]:
    """Subscriptions where the principal may hold assignments (filter covers at/above/below)."""
    subscriptions = {identity.subscription_id.lower()}
    for scope in identity.role_assignments.values_list("scope", flat=True):
        subscriptions.add(subscription_of(scope).lower())
    return {f"/subscriptions/{subscription}" for subscription in subscriptions}


def find_drift(identity: Identity, gateway: AzureGateway) -> list[dict[str, Any]]:
    """What differs between the database and Azure, as a list of findings (empty: in sync)."""
    findings: list[dict[str, Any]] = []
    state = gateway.get_identity(
        subscription_id=identity.subscription_id,
        resource_group=identity.resource_group,
        name=identity.name,
    )
    if state is None:
        return [{"kind": "identity_missing", "detail": f"{identity.name} no longer exists"}]
    if state.principal_id.lower() != identity.principal_id.lower():
        findings.append(
            {
                "kind": "identity_replaced",
                "detail": "the identity was deleted and recreated: it has a new principal id "
                f"({state.principal_id}); role assignments of the old one are lost",
            }
        )
    azure_fics = {
        fic.name.lower(): fic
        for fic in gateway.list_fics(
            subscription_id=identity.subscription_id,
            resource_group=identity.resource_group,
            identity_name=identity.name,
        )
    }
    for fic in identity.federated_credentials.filter(status=ChildStatus.ACTIVE):
        found = azure_fics.get(fic.name.lower())
        if found is None:
            findings.append({"kind": "fic_missing", "detail": f"{fic.name} ({fic.subject})"})
        elif (found.issuer, found.subject, found.audiences) != (
            fic.issuer,
            fic.subject,
            (fic.audience,),
        ):
            findings.append(
                {
                    "kind": "fic_changed",
                    "detail": f"{fic.name}: expected {fic.issuer} / {fic.subject}, "
                    f"found {found.issuer} / {found.subject}",
                }
            )
    expected = {
        (ra.scope.lower(), ra.role.role_definition_guid.lower()): ra
        for ra in identity.role_assignments.filter(status=ChildStatus.ACTIVE).select_related("role")
    }
    actual = {}
    for scope in _scopes_to_search(identity):
        for assignment in gateway.list_role_assignments_for_principal(
            scope=scope, principal_id=identity.principal_id
        ):
            actual[(assignment.scope.lower(), assignment.role_definition_guid)] = assignment
    for key, ra in expected.items():
        if key not in actual:
            findings.append(
                {"kind": "role_assignment_missing", "detail": f"{ra.role.name} on {ra.scope}"}
            )
    role_names = dict(CatalogRole.objects.values_list("role_definition_guid", "name"))
    for key, assignment in actual.items():
        if key not in expected:
            role = role_names.get(assignment.role_definition_guid, assignment.role_definition_guid)
            findings.append(
                {
                    "kind": "role_assignment_extra",
                    "detail": f"{role} on {assignment.scope} was granted outside the portal",
                    "scope": assignment.scope,
                    "name": assignment.name,
                }
            )
    return findings


@transaction.atomic
def _record_drift(identity: Identity, findings: list[dict[str, Any]]) -> None:
    new_state = DriftState.DRIFTED if findings else DriftState.IN_SYNC
    previous = Identity.objects.select_for_update(no_key=True).get(pk=identity.pk)
    Identity.objects.filter(pk=identity.pk).update(
        drift_state=new_state,
        drift_details={"findings": findings},
        drift_checked_at=timezone.now(),
    )
    # An audit row when the drift state or findings change, not on every scheduled check.
    if previous.drift_state != new_state or previous.drift_details.get("findings") != findings:
        recorded = audit_record(
            actor=None,
            action=AuditAction.IDENTITY_DRIFT_DETECTED
            if findings
            else AuditAction.IDENTITY_DRIFT_CLEARED,
            identity=identity,
            data={"from": previous.drift_state, "to": new_state, "findings": findings},
        )
        if findings:
            notifications_record(
                event=NotificationEvent.DRIFT_DETECTED,
                occurrence=recorded,
                identity=identity,
                data={"findings": findings},
            )


def identity_check_drift(*, identity: Identity, gateway: AzureGateway | None = None) -> list[Any]:
    """Compare one ready identity with Azure and record the result."""
    findings = find_drift(identity, gateway or get_gateway())
    _record_drift(identity, findings)
    metrics.drift_recorded(
        result="drifted" if findings else "in_sync", finding_kinds=[f["kind"] for f in findings]
    )
    return findings


def check_all(*, gateway: AzureGateway | None = None) -> dict[str, int]:
    """The scheduled drift check over every ready identity; one failure does not stop it."""
    gateway = gateway or get_gateway()
    counts = {"checked": 0, "drifted": 0, "errors": 0}
    for identity in Identity.objects.filter(status=Identity.Status.READY).iterator():
        try:
            findings = identity_check_drift(identity=identity, gateway=gateway)
        except GatewayError as error:
            counts["errors"] += 1
            metrics.drift_recorded(result="error", finding_kinds=[])
            logger.warning("drift check of %s failed: %s", identity.name, error.describe())
            continue
        counts["checked"] += 1
        counts["drifted"] += bool(findings)
    return counts


def identity_repair(*, identity: Identity, gateway: AzureGateway | None = None) -> list[Any]:
    """Make Azure match again: re-PUT everything the portal owns, remove extra assignments.

    Steps are recorded on the identity's original request (the progress view shows them).
    Returns the findings after the repair (empty when in sync).
    """
    gateway = gateway or get_gateway()
    origin = (
        IdentityRequest.objects.filter(identity=identity, kind=RequestKind.NEW)
        .order_by("created_at")
        .first()
    )
    if origin is None:
        raise ValueError(f"identity {identity.name} has no originating request")
    findings = find_drift(identity, gateway)
    reconcile.repair(origin, identity, findings, gateway)
    identity.refresh_from_db()
    return identity_check_drift(identity=identity, gateway=gateway)
