"""Time-bound access against the emulator over HTTPS: the expiry sweep (the beat task's body,
called in-process) removes a role assignment past its end from Azure through the revoke path,
and decommissions an identity past its end through a request approved by policy; each rerun
does nothing more."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from identities.audit.actions import AuditAction
from identities.models import (
    AuditEvent,
    ChildStatus,
    Identity,
    IdentityRequest,
    RequestKind,
    RoleAssignment,
)
from identities.policy import RoleDraft
from identities.services import identity_request_approve, identity_request_change_create
from identities.work import Work, sending_to
from provisioning.reconcile import reconcile_request
from provisioning.tasks import revoke_role_assignments, sweep_expired_access
from tests.support.people import VAULT_SCOPE
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ready_identity(sandbox: Sandbox, approved_request: ApprovedRequestFactory) -> Identity:
    identity_request: IdentityRequest = approved_request()
    reconcile_request(identity_request.pk)
    identity_request.refresh_from_db()
    assert identity_request.status == "ready", identity_request.last_error
    return Identity.objects.get(pk=identity_request.identity_id)


def _sweep() -> tuple[dict[str, object], list[tuple[Work, tuple[object, ...]]]]:
    sent: list[tuple[Work, tuple[object, ...]]] = []
    with sending_to(lambda work, args: sent.append((work, args))):  # type: ignore[arg-type,func-returns-value]
        result = sweep_expired_access()
    return result, sent


def test_a_role_past_its_end_is_removed_from_azure_once(
    sandbox: Sandbox, ready_identity: Identity
) -> None:
    assert len(sandbox.arm()["role_assignments"]) == 1
    assignment = ready_identity.role_assignments.get()
    RoleAssignment.objects.filter(pk=assignment.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    result, sent = _sweep()
    assert result["roles_expired_on"] == [ready_identity.pk]
    assert sent == [(Work.REVOKE_ROLES, (ready_identity.pk,))]
    revoke_role_assignments(ready_identity.pk)

    assert sandbox.arm()["role_assignments"] == {}
    assignment.refresh_from_db()
    assert assignment.status == ChildStatus.REMOVED
    ready_identity.refresh_from_db()
    assert ready_identity.status == Identity.Status.READY  # the identity stays
    assert len(sandbox.arm()["identities"]) == 1
    assert (
        AuditEvent.objects.filter(
            action=AuditAction.IDENTITY_ROLE_EXPIRED, identity=ready_identity
        ).count()
        == 1
    )
    assert AuditEvent.objects.filter(
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_DELETED, identity=ready_identity
    ).exists()
    # Idempotent: the next sweeps find nothing to expire or re-send.
    result, sent = _sweep()
    assert (result["roles_expired_on"], result["resent"], sent) == ([], [], [])


def test_an_identity_past_its_end_is_decommissioned_in_azure(
    sandbox: Sandbox, ready_identity: Identity
) -> None:
    Identity.objects.filter(pk=ready_identity.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    result, sent = _sweep()
    [request_id] = result["decommissions"]  # type: ignore[misc]
    assert (Work.PROVISION, (request_id,)) in sent
    reconcile_request(request_id)

    decommission = IdentityRequest.objects.get(pk=request_id)
    assert (decommission.kind, decommission.status) == (RequestKind.DECOMMISSION, "ready")
    ready_identity.refresh_from_db()
    assert ready_identity.status == Identity.Status.DECOMMISSIONED
    assert sandbox.arm()["identities"] == {}
    assert sandbox.arm()["role_assignments"] == {}
    assert (
        AuditEvent.objects.filter(
            action=AuditAction.IDENTITY_EXPIRED, identity=ready_identity
        ).count()
        == 1
    )
    result, _ = _sweep()
    assert result["decommissions"] == []


# --- AZURE_TIME_BOUND_ASSIGNMENTS: Azure ends the assignment itself -----------------------------


def _time_bound_identity(approved_request: ApprovedRequestFactory, end: datetime) -> Identity:
    identity_request: IdentityRequest = approved_request(
        roles=(RoleDraft("Key Vault Secrets User", VAULT_SCOPE, expires_at=end),)
    )
    reconcile_request(identity_request.pk)
    identity_request.refresh_from_db()
    assert identity_request.status == "ready", identity_request.last_error
    return Identity.objects.get(pk=identity_request.identity_id)


def test_schedule_mode_writes_a_schedule_request_that_azure_ends_and_the_sweep_records(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, settings: Any
) -> None:
    settings.AZURE_TIME_BOUND_ASSIGNMENTS = True
    end = timezone.now() + timedelta(days=3)
    identity = _time_bound_identity(approved_request, end)

    state = sandbox.arm()
    [request] = state["schedule_requests"].values()
    assert request["end"] == pytest.approx(end.timestamp(), abs=1)
    assert len(state["role_assignments"]) == 1
    assert not AuditEvent.objects.filter(
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_SCHEDULE_FALLBACK
    ).exists()

    # Azure ends it at its end date, portal or not; the portal's sweep then records it removed.
    sandbox.emulator.config(clock_offset_seconds=4 * 86400)
    RoleAssignment.objects.filter(identity=identity).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    result, _ = _sweep()
    assert result["roles_expired_on"] == [identity.pk]
    revoke_role_assignments(identity.pk)
    assert identity.role_assignments.get().status == ChildStatus.REMOVED


def test_a_schedule_request_for_a_principal_not_replicated_yet_is_retried(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, settings: Any
) -> None:
    """A schedule request cannot say principalType, so a new identity's principal is "not
    found" (SubjectNotFound) until it replicates: retried like PrincipalNotFound, not failed."""
    settings.AZURE_TIME_BOUND_ASSIGNMENTS = True
    sandbox.emulator.config(principal_replication_delay_seconds=1.5)

    _time_bound_identity(approved_request, timezone.now() + timedelta(days=3))

    codes = [entry.get("error") for entry in sandbox.emulator.requests()]
    assert "SubjectNotFound" in codes
    assert len(sandbox.arm()["schedule_requests"]) == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("Denied", "RoleAssignmentScheduleDenied"),
        ("PendingApproval", "RoleAssignmentScheduleNeedsApproval"),
        ("PendingProvisioning", "RoleAssignmentSchedulePending"),
    ],
)
def test_a_schedule_request_answered_without_an_assignment_is_read_by_its_status(
    status: str,
    code: str,
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    settings: Any,
) -> None:
    """A 201 whose `status` is Denied or waits for a person in PIM fails at once saying so
    (no fallback to a plain assignment: that would get round the policy); one still on its way
    (PendingProvisioning) is retried, the rerun reading the request's status, until the
    attempts are spent."""
    settings.AZURE_TIME_BOUND_ASSIGNMENTS = True
    sandbox.emulator.config(schedule_request_answer_status=status)
    identity_request: IdentityRequest = approved_request(
        roles=(
            RoleDraft(
                "Key Vault Secrets User", VAULT_SCOPE, expires_at=timezone.now() + timedelta(days=3)
            ),
        )
    )

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == "failed"
    assert code in identity_request.last_error and status in identity_request.last_error
    assert sandbox.arm()["role_assignments"] == {}
    reads = [
        entry
        for entry in sandbox.emulator.requests()
        if entry["method"] == "GET" and "roleassignmentschedulerequests" in entry["path"].lower()
    ]
    assert bool(reads) is (status == "PendingProvisioning")  # retried: the rerun reads it


def test_a_policy_refusal_falls_back_to_a_plain_assignment_audited(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, settings: Any
) -> None:
    settings.AZURE_TIME_BOUND_ASSIGNMENTS = True
    sandbox.emulator.config(schedule_request_refused=True)  # a policy forbids time-bound ones
    identity = _time_bound_identity(approved_request, timezone.now() + timedelta(days=3))

    state = sandbox.arm()
    assert state["schedule_requests"] == {}
    [assignment] = state["role_assignments"].values()
    assert assignment.get("expires_at") is None  # plain: only the portal's sweep ends it
    fallback = AuditEvent.objects.get(action=AuditAction.AZURE_ROLE_ASSIGNMENT_SCHEDULE_FALLBACK)
    assert fallback.identity_id == identity.pk
    assert fallback.data["code"] == "RoleAssignmentRequestPolicyValidationFailed"
    assert identity.role_assignments.get().status == ChildStatus.ACTIVE


def test_the_end_is_clamped_to_the_scopes_policy_maximum(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, settings: Any
) -> None:
    settings.AZURE_TIME_BOUND_ASSIGNMENTS = True
    sandbox.emulator.config(schedule_max_duration_days=2)  # Expiration_Admin_Assignment P2D
    asked = timezone.now() + timedelta(days=3)
    identity = _time_bound_identity(approved_request, asked)

    [request] = sandbox.arm()["schedule_requests"].values()
    allowed = (timezone.now() + timedelta(days=2)).timestamp()
    assert allowed - 60 < request["end"] <= allowed  # Azure ends it at the policy's maximum
    # The approved end stays the portal's: its sweep removes the role then at the latest.
    assert identity.role_assignments.get().expires_at == asked
    assert not AuditEvent.objects.filter(
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_SCHEDULE_FALLBACK
    ).exists()


# --- renewal in Azure-enforced mode: AdminExtend, or AdminRenew once Azure ended it --------------

SECRETS_USER = "Key Vault Secrets User"


def _renew(identity: Identity, requester: Any, approver: Any, end: datetime) -> IdentityRequest:
    """File, approve and run a change renewing the identity's one role until `end`."""
    change = identity_request_change_create(
        requester=requester,
        identity=identity,
        add=(),
        remove=(),
        renew=(RoleDraft(SECRETS_USER, VAULT_SCOPE, expires_at=end),),
        justification="Checkout still reads the vault this quarter.",
    )
    identity_request_approve(identity_request=change, approver=approver)
    reconcile_request(change.pk)
    change.refresh_from_db()
    assert change.status == "ready", change.last_error
    return change


def _schedule_writes(sandbox: Sandbox, start: int) -> list[str]:
    return [
        write["path"].rsplit("/", 2)[-2]
        for write in sandbox.arm_writes(start)
        if write["method"] == "PUT"
    ]


def test_a_renewal_extends_the_live_schedule_in_azure_with_admin_extend(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    settings: Any,
) -> None:
    settings.AZURE_TIME_BOUND_ASSIGNMENTS = True
    identity = _time_bound_identity(approved_request, timezone.now() + timedelta(days=3))
    assignment = identity.role_assignments.get()
    new_end = timezone.now() + timedelta(days=10)
    log_start = len(sandbox.emulator.requests())

    change = _renew(identity, requester, approver, new_end)

    # One write: the schedule request; no new assignment, no delete.
    assert _schedule_writes(sandbox, log_start) == ["roleAssignmentScheduleRequests"]
    assert [w["method"] for w in sandbox.arm_writes(log_start)] == ["PUT"]
    state = sandbox.arm()
    types = sorted(
        r.get("request_type", "AdminAssign") for r in state["schedule_requests"].values()
    )
    assert types == ["AdminAssign", "AdminExtend"]
    [held] = state["role_assignments"].values()
    assert held["name"] == assignment.name
    assert held["expires_at"] == pytest.approx(new_end.timestamp(), abs=1)
    event = AuditEvent.objects.get(
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_EXTENDED, identity_request=change
    )
    assert (event.data["request_type"], event.data["scope"]) == ("AdminExtend", VAULT_SCOPE)
    assert event.data["azure_request_id"]
    sandbox.emulator.config(clock_offset_seconds=5 * 86400)  # past the old end: still held
    assert len(sandbox.arm()["role_assignments"]) == 1
    assignment.refresh_from_db()
    assert (assignment.status, assignment.expires_at) == (ChildStatus.ACTIVE, new_end)


def test_a_renewal_after_azure_ended_the_role_renews_it_under_its_name(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    settings: Any,
) -> None:
    settings.AZURE_TIME_BOUND_ASSIGNMENTS = True
    sandbox.emulator.config(schedule_max_duration_days=2)  # Azure ends it after 2 days ...
    identity = _time_bound_identity(approved_request, timezone.now() + timedelta(days=30))
    assignment = identity.role_assignments.get()
    sandbox.emulator.config(schedule_max_duration_days=None, clock_offset_seconds=3 * 86400)
    # ... while the portal's end is later: three days on, Azure has ended it (the emulator drops
    # it on the next ARM request), the portal still holds it active.
    new_end = timezone.now() + timedelta(days=20)

    change = _renew(identity, requester, approver, new_end)

    [held] = sandbox.arm()["role_assignments"].values()
    assert held["name"] == assignment.name  # the name the portal holds, so it can delete it
    assert held["expires_at"] == pytest.approx(new_end.timestamp(), abs=1)
    event = AuditEvent.objects.get(
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_EXTENDED, identity_request=change
    )
    assert event.data["request_type"] == "AdminRenew"


def test_a_plain_assignment_has_nothing_to_extend_and_the_sweep_keeps_the_end(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    settings: Any,
) -> None:
    settings.AZURE_TIME_BOUND_ASSIGNMENTS = True
    sandbox.emulator.config(schedule_request_refused=True)  # made plain (the fallback)
    identity = _time_bound_identity(approved_request, timezone.now() + timedelta(days=3))
    sandbox.emulator.config(schedule_request_refused=False)
    new_end = timezone.now() + timedelta(days=10)

    change = _renew(identity, requester, approver, new_end)

    [held] = sandbox.arm()["role_assignments"].values()
    assert held.get("expires_at") is None  # still plain: nothing was invented in Azure
    event = AuditEvent.objects.get(
        action=AuditAction.AZURE_ROLE_ASSIGNMENT_NOT_EXTENDED, identity_request=change
    )
    assert event.data["code"] == "RoleAssignmentDoesNotExist"
    assert identity.role_assignments.get().expires_at == new_end  # the sweep's end


def test_without_the_setting_a_renewal_writes_nothing_to_azure(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    settings: Any,
) -> None:
    settings.AZURE_TIME_BOUND_ASSIGNMENTS = False
    identity = _time_bound_identity(approved_request, timezone.now() + timedelta(days=3))
    log_start = len(sandbox.emulator.requests())

    change = _renew(identity, requester, approver, timezone.now() + timedelta(days=10))

    assert sandbox.arm_writes(log_start) == []
    assert not AuditEvent.objects.filter(
        identity_request=change, action__startswith="azure.role_assignment"
    ).exists()
