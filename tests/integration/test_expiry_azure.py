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
