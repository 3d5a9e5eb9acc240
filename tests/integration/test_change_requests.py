"""Change requests on a live identity through the engine, the real azure-mgmt SDK clients and the
emulator over HTTPS: only the delta is written, the client id stays, every write is a step with
its audit row, and Azure ends equal to the database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

from identities.models import (
    AuditEvent,
    ChildStatus,
    DriftState,
    Identity,
    IdentityRequest,
    RequestStatus,
)
from identities.policy import RoleDraft
from identities.services import (
    identity_request_approve,
    identity_request_cancel,
    identity_request_change_create,
)
from provisioning.drift import identity_check_drift
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.reconcile import reconcile_request
from tests.support.emulator import build_azure_clients
from tests.support.people import STORAGE_SCOPE, SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory, Sandbox, top_level_resource

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECRETS_USER = "Key Vault Secrets User"
BLOB_READER = "Storage Blob Data Reader"
BLOB_READER_GUID = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"


def vault(n: int) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
        f"/providers/Microsoft.KeyVault/vaults/kv-payments-{n}"
    )


def live_identity(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, roles: int
) -> Identity:
    identity_request = approved_request(
        roles=tuple(RoleDraft(SECRETS_USER, vault(n)) for n in range(roles))
    )
    reconcile_request(identity_request.pk)
    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    return Identity.objects.get(pk=identity_request.identity_id)


def approve_change(
    sandbox: Sandbox,
    identity: Identity,
    requester: Any,
    approver: Any,
    *,
    add: tuple[RoleDraft, ...] = (),
    remove: tuple[RoleDraft, ...] = (),
) -> IdentityRequest:
    sandbox.emulator.register_resources(*sorted({top_level_resource(r.scope) for r in add}))
    change = identity_request_change_create(
        requester=requester,
        identity=identity,
        add=add,
        remove=remove,
        justification="Checkout moved its secrets to a new vault.",
    )
    identity_request_approve(identity_request=change, approver=approver)
    change.refresh_from_db()
    assert change.status == RequestStatus.APPROVED
    return change


def azure_assignments(sandbox: Sandbox, identity: Identity) -> set[tuple[str, str]]:
    """(role definition GUID, scope) of the identity's role assignments in Azure."""
    return {
        (a["role_definition_id"].rsplit("/", 1)[-1].lower(), a["scope"].lower())
        for a in sandbox.arm()["role_assignments"].values()
        if a["principal_id"] == identity.principal_id
    }


def database_assignments(identity: Identity) -> set[tuple[str, str]]:
    return {
        (guid.lower(), scope.lower())
        for guid, scope in identity.role_assignments.filter(status=ChildStatus.ACTIVE).values_list(
            "role__role_definition_guid", "scope"
        )
    }


def test_adding_one_and_removing_one_of_ten_roles_writes_exactly_two_arm_requests(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, requester: Any, approver: Any
) -> None:
    identity = live_identity(sandbox, approved_request, roles=10)
    client_id, principal_id = identity.client_id, identity.principal_id
    change = approve_change(
        sandbox,
        identity,
        requester,
        approver,
        add=(RoleDraft(BLOB_READER, STORAGE_SCOPE),),
        remove=(RoleDraft(SECRETS_USER, vault(3)),),
    )
    log_start = len(sandbox.emulator.requests())

    reconcile_request(change.pk)

    change.refresh_from_db()
    assert change.status == RequestStatus.READY, change.last_error
    writes = sandbox.arm_writes(log_start)
    assert sorted(w["method"] for w in writes) == ["DELETE", "PUT"], [w["path"] for w in writes]
    assert all("/roleAssignments/" in w["path"] for w in writes)
    identity.refresh_from_db()
    assert (identity.status, identity.client_id, identity.principal_id) == (
        Identity.Status.READY,
        client_id,
        principal_id,
    )
    assert database_assignments(identity) == azure_assignments(sandbox, identity)
    assert (BLOB_READER_GUID, STORAGE_SCOPE.lower()) in azure_assignments(sandbox, identity)
    assert len(azure_assignments(sandbox, identity)) == 10
    steps = ProvisioningStep.objects.filter(identity_request=change)
    assert sorted(s.key.split(":")[0] for s in steps) == ["delete-role", "role"]
    assert set(steps.values_list("status", flat=True)) == {StepStatus.DONE}
    assert all(step.azure_request_id for step in steps)
    actions = list(
        AuditEvent.objects.filter(identity_request=change)
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[:3] == [
        "identity_request.created",
        "identity.roles_changing",
        "identity_request.approved",
    ]
    assert actions.count("azure.role_assignment.created") == 1
    assert actions.count("azure.role_assignment.deleted") == 1
    assert actions[-2:] == ["identity_request.ready", "identity.roles_changed"]
    changed = AuditEvent.objects.get(identity_request=change, action="identity.roles_changed")
    assert [r["scope"] for r in changed.data["added"]] == [STORAGE_SCOPE]
    assert [r["scope"] for r in changed.data["removed"]] == [vault(3)]
    assert len(changed.data["unchanged"]) == 9


def test_changing_a_roles_scope_removes_the_old_assignment_and_puts_the_new_one(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, requester: Any, approver: Any
) -> None:
    identity = live_identity(sandbox, approved_request, roles=1)
    change = approve_change(
        sandbox,
        identity,
        requester,
        approver,
        add=(RoleDraft(SECRETS_USER, vault(7)),),
        remove=(RoleDraft(SECRETS_USER, vault(0)),),
    )

    reconcile_request(change.pk)

    change.refresh_from_db()
    assert change.status == RequestStatus.READY, change.last_error
    assert azure_assignments(sandbox, identity) == {
        ("4633458b-17de-408a-b874-0445c86b69e6", vault(7).lower())
    }
    assert database_assignments(identity) == azure_assignments(sandbox, identity)
    log_start = len(sandbox.emulator.requests())
    reconcile_request(change.pk)  # a redelivered task: nothing is written twice
    assert sandbox.arm_writes(log_start) == []


def test_a_change_approved_while_the_identity_drifts_is_merged_with_the_drift(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, requester: Any, approver: Any
) -> None:
    """Decision: merge, not repair first. The role the change removes was already deleted
    outside the portal (done: Azure answers 204), the role it adds was already granted outside
    the portal under another name (adopted, not duplicated); the identity is in sync after."""
    identity = live_identity(sandbox, approved_request, roles=2)
    clients = build_azure_clients(sandbox.emulator, SUBSCRIPTION)
    gone = identity.role_assignments.get(scope=vault(1))
    clients.authorization.role_assignments.delete(gone.scope, gone.name)
    sandbox.emulator.register_resources(top_level_resource(STORAGE_SCOPE))
    clients.authorization.role_assignments.create(
        STORAGE_SCOPE,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization"
            f"/roleDefinitions/{BLOB_READER_GUID}",
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
        ),
    )
    assert identity_check_drift(identity=identity) != []
    identity.refresh_from_db()
    assert identity.drift_state == DriftState.DRIFTED

    change = approve_change(
        sandbox,
        identity,
        requester,
        approver,
        add=(RoleDraft(BLOB_READER, STORAGE_SCOPE),),
        remove=(RoleDraft(SECRETS_USER, vault(1)),),
    )
    reconcile_request(change.pk)

    change.refresh_from_db()
    assert change.status == RequestStatus.READY, change.last_error
    assert database_assignments(identity) == azure_assignments(sandbox, identity)
    assert len(azure_assignments(sandbox, identity)) == 2
    assert identity_check_drift(identity=identity) == []
    identity.refresh_from_db()
    assert identity.drift_state == DriftState.IN_SYNC
    assert (
        AuditEvent.objects.filter(
            identity_request=change, action="azure.role_assignment.adopted"
        ).count()
        == 1
    )


def test_a_failed_change_cancelled_leaves_the_database_equal_to_azure(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, requester: Any, approver: Any
) -> None:
    identity = live_identity(sandbox, approved_request, roles=2)
    sandbox.emulator.register_resources(top_level_resource(STORAGE_SCOPE))
    # vault(7) is not registered: ARM answers its PUT 404 ResourceNotFound (a permanent error)
    # while the other addition and the removal go through.
    change = identity_request_change_create(
        requester=requester,
        identity=identity,
        add=(RoleDraft(BLOB_READER, STORAGE_SCOPE), RoleDraft(SECRETS_USER, vault(7))),
        remove=(RoleDraft(SECRETS_USER, vault(1)),),
        justification="Checkout moved its secrets to a new vault.",
    )
    identity_request_approve(identity_request=change, approver=approver)
    reconcile_request(change.pk)
    change.refresh_from_db()
    assert change.status == RequestStatus.FAILED
    assert "ResourceNotFound" in change.last_error

    identity_request_cancel(identity_request=change, actor=requester)

    change.refresh_from_db()
    assert change.status == RequestStatus.CANCELLED
    assert database_assignments(identity) == azure_assignments(sandbox, identity)
    assert identity.role_assignments.filter(status=ChildStatus.PENDING).count() == 0
    event = AuditEvent.objects.filter(identity_request=change).latest("id")
    assert event.action == "identity_request.cancelled"
    assert (event.data["added"], event.data["removed"], event.data["not_added"]) == (
        [{"role": BLOB_READER, "scope": STORAGE_SCOPE}],
        [{"role": SECRETS_USER, "scope": vault(1)}],
        [{"role": SECRETS_USER, "scope": vault(7)}],
    )
    assert identity_check_drift(identity=identity) == []
    identity.refresh_from_db()
    assert identity.drift_state == DriftState.IN_SYNC
