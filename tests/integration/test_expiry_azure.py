"""Time-bound access against the emulator over HTTPS: the expiry sweep (the beat task's body,
called in-process) removes a role assignment past its end from Azure through the revoke path,
and decommissions an identity past its end through a request approved by policy; each rerun
does nothing more."""

from __future__ import annotations

from datetime import timedelta

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
from identities.work import Work, sending_to
from provisioning.reconcile import reconcile_request
from provisioning.tasks import revoke_role_assignments, sweep_expired_access
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
