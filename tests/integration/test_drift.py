"""Drift found against the emulator's state, recorded with an audit row, and repaired."""

from __future__ import annotations

import uuid

import pytest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

from identities.models import AuditEvent, DriftState, Identity, IdentityRequest
from provisioning.drift import identity_check_drift, identity_repair
from provisioning.reconcile import reconcile_request
from tests.support.emulator import build_azure_clients
from tests.support.people import SUBSCRIPTION, VAULT_SCOPE
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


@pytest.fixture
def ready_identity(sandbox: Sandbox, approved_request: ApprovedRequestFactory) -> Identity:
    identity_request: IdentityRequest = approved_request()
    reconcile_request(identity_request.pk)
    identity_request.refresh_from_db()
    assert identity_request.status == "ready", identity_request.last_error
    return Identity.objects.get(pk=identity_request.identity_id)


def test_an_identity_matching_azure_is_in_sync(sandbox: Sandbox, ready_identity: Identity) -> None:
    assert identity_check_drift(identity=ready_identity) == []
    ready_identity.refresh_from_db()
    assert ready_identity.drift_state == DriftState.IN_SYNC
    assert ready_identity.drift_checked_at is not None


def test_changes_made_outside_the_portal_are_found_audited_and_repaired(
    sandbox: Sandbox, ready_identity: Identity
) -> None:
    clients = build_azure_clients(sandbox.emulator, SUBSCRIPTION)
    [assignment] = ready_identity.role_assignments.all()
    clients.authorization.role_assignments.delete(assignment.scope, assignment.name)
    extra_scope = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    clients.authorization.role_assignments.create(
        extra_scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization"
            f"/roleDefinitions/{READER}",
            principal_id=ready_identity.principal_id,
            principal_type="ServicePrincipal",
        ),
    )

    findings = identity_check_drift(identity=ready_identity)

    kinds = sorted(finding["kind"] for finding in findings)
    assert kinds == ["role_assignment_extra", "role_assignment_missing"]
    ready_identity.refresh_from_db()
    assert ready_identity.drift_state == DriftState.DRIFTED
    event = AuditEvent.objects.get(action="identity.drift_detected")
    assert event.identity_id == ready_identity.pk
    # A second check with the same findings does not write another audit row.
    identity_check_drift(identity=ready_identity)
    assert AuditEvent.objects.filter(action="identity.drift_detected").count() == 1

    assert identity_repair(identity=ready_identity) == []

    ready_identity.refresh_from_db()
    assert ready_identity.drift_state == DriftState.IN_SYNC
    assignments = list(sandbox.arm()["role_assignments"].values())
    assert [a["scope"].lower() for a in assignments] == [VAULT_SCOPE.lower()]
    assert AuditEvent.objects.filter(action="azure.role_assignment.deleted_extra").count() == 1
    assert AuditEvent.objects.filter(action="identity.drift_cleared").count() == 1


def test_a_deleted_identity_is_recreated_with_its_credential_and_roles(
    sandbox: Sandbox, ready_identity: Identity
) -> None:
    clients = build_azure_clients(sandbox.emulator, SUBSCRIPTION)
    clients.msi.user_assigned_identities.delete(ready_identity.resource_group, ready_identity.name)
    old_principal = ready_identity.principal_id

    assert [f["kind"] for f in identity_check_drift(identity=ready_identity)] == [
        "identity_missing"
    ]
    assert identity_repair(identity=ready_identity) == []

    ready_identity.refresh_from_db()
    assert ready_identity.principal_id != old_principal
    arm = sandbox.arm()
    assert len(arm["identities"]) == 1
    live = [
        a
        for a in arm["role_assignments"].values()
        if a["principal_id"] == ready_identity.principal_id
    ]
    assert len(live) == 1


def test_an_assignment_above_the_subscription_is_reported_and_repair_leaves_it(
    sandbox: Sandbox, ready_identity: Identity
) -> None:
    """`principalId eq` also lists assignments above the subscription (the tenant root, a
    management group). Drift, reported as such; repair finishes without trying to remove it
    (the portal never writes outside a subscription) and the finding stays."""
    clients = build_azure_clients(sandbox.emulator, SUBSCRIPTION)
    clients.authorization.role_assignments.create(
        "/",
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/providers/Microsoft.Authorization/roleDefinitions/{READER}",
            principal_id=ready_identity.principal_id,
            principal_type="ServicePrincipal",
        ),
    )

    [finding] = identity_check_drift(identity=ready_identity)

    assert finding["kind"] == "role_assignment_extra_above"
    assert "above any subscription" in finding["detail"]
    assert identity_repair(identity=ready_identity) == [finding]
    assert not AuditEvent.objects.filter(action="azure.role_assignment.deleted_extra").exists()
    ready_identity.refresh_from_db()
    assert ready_identity.drift_state == DriftState.DRIFTED
