"""Access-review revocation and ownership-transfer tags, written to the emulator over HTTPS by
the real provisioning code (the Celery tasks' bodies, called in-process)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from identities.models import AuditEvent, ChildStatus, Identity, IdentityRequest
from identities.services import (
    access_review_open,
    access_reviews_revoke_overdue,
    ownership_transfer_approve,
    ownership_transfer_consent,
    ownership_transfer_request,
)
from identities.work import sending_to
from provisioning.reconcile import reconcile_request
from provisioning.tasks import revoke_role_assignments, update_identity_tags
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ready_identity(sandbox: Sandbox, approved_request: ApprovedRequestFactory) -> Identity:
    identity_request: IdentityRequest = approved_request()
    reconcile_request(identity_request.pk)
    identity_request.refresh_from_db()
    assert identity_request.status == "ready", identity_request.last_error
    return Identity.objects.get(pk=identity_request.identity_id)


def test_an_overdue_item_loses_its_role_assignments_in_azure_and_keeps_its_identity(
    sandbox: Sandbox, ready_identity: Identity, approver: Any
) -> None:
    assert len(sandbox.arm()["role_assignments"]) == 1
    campaign = access_review_open(
        actor=approver,
        name="overdue",
        due_at=timezone.now() + timedelta(days=1),
        revoke_when_overdue=True,
    )
    sent: list[int] = []
    with sending_to(lambda work, args: sent.append(args[0])):  # type: ignore[arg-type,func-returns-value]
        revoked = access_reviews_revoke_overdue(now=campaign.due_at + timedelta(minutes=1))
    assert revoked == [ready_identity.pk] == sent

    revoke_role_assignments(ready_identity.pk)

    assert sandbox.arm()["role_assignments"] == {}
    assert ready_identity.role_assignments.get().status == ChildStatus.REMOVED
    ready_identity.refresh_from_db()
    assert ready_identity.status == Identity.Status.READY
    assert len(sandbox.arm()["identities"]) == 1  # the identity itself stays
    assert AuditEvent.objects.filter(
        action="azure.role_assignment.deleted", identity=ready_identity
    ).exists()
    revoke_role_assignments(ready_identity.pk)  # a redelivery does nothing more


def test_a_transfer_moves_the_team_and_its_azure_tag(
    sandbox: Sandbox,
    ready_identity: Identity,
    requester: Any,
    outsider: Any,
    approver: Any,
) -> None:
    transfer = ownership_transfer_request(
        requester=requester,
        identity=ready_identity,
        to_team=outsider.teams.get(),
        justification="Search now runs checkout.",
    )
    ownership_transfer_consent(transfer=transfer, actor=outsider)
    with sending_to(lambda work, args: None):  # type: ignore[arg-type,return-value]
        ownership_transfer_approve(transfer=transfer, approver=approver)

    update_identity_tags(ready_identity.pk)

    [record] = sandbox.arm()["identities"].values()
    assert record["tags"]["team"] == "search"
    assert record["tags"]["app"] == "checkout"  # the other tags are kept
    ready_identity.refresh_from_db()
    assert ready_identity.team.name == "search"
    event = AuditEvent.objects.filter(action="azure.identity.updated").last()
    assert event is not None and event.data["tags"]["team"] == "search"
