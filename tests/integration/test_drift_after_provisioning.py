"""The identity's drift state is checked right after provisioning, not left "unknown" until the
hourly run: the worker's task asks for a check of that identity, which runs the drift code."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import DriftState, Identity, RequestStatus
from identities.services import identity_request_approve, identity_request_decommission_create
from identities.work import Work
from provisioning.tasks import check_identity_drift, provision_identity_request
from tests.support.emulator import build_azure_clients
from tests.support.people import SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_ready_identity_gets_its_drift_checked_at_once(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, work_sent: list[Any], settings: Any
) -> None:
    settings.VERIFY_AFTER_PROVISIONING = False
    identity_request = approved_request()
    work_sent.clear()  # the approval's own PROVISION message

    provision_identity_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    identity = Identity.objects.get(pk=identity_request.identity_id)
    assert identity.drift_state == DriftState.UNKNOWN
    assert _besides_notifications(work_sent) == [(Work.CHECK_IDENTITY_DRIFT, (identity.pk,))]

    check_identity_drift(identity.pk)  # what the worker runs for that message

    identity.refresh_from_db()
    assert identity.drift_state == DriftState.IN_SYNC
    assert identity.drift_checked_at is not None


def test_the_check_finds_drift_made_behind_the_portals_back(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, work_sent: list[Any], settings: Any
) -> None:
    settings.VERIFY_AFTER_PROVISIONING = False
    identity_request = approved_request()
    provision_identity_request(identity_request.pk)
    identity = Identity.objects.get(pk=identity_request.identity_id)
    # Someone deletes the role assignment in Azure before the check runs.
    [assignment] = identity.role_assignments.all()
    clients = build_azure_clients(sandbox.emulator, SUBSCRIPTION)
    clients.authorization.role_assignments.delete(assignment.scope, assignment.name)

    check_identity_drift(identity.pk)

    identity.refresh_from_db()
    assert identity.drift_state == DriftState.DRIFTED


def test_a_decommission_asks_for_no_drift_check(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    work_sent: list[Any],
    requester: Any,
    approver: Any,
    settings: Any,
) -> None:
    settings.VERIFY_AFTER_PROVISIONING = False
    first = approved_request()
    provision_identity_request(first.pk)
    work_sent.clear()
    decommission = identity_request_decommission_create(
        requester=requester,
        identity=Identity.objects.get(pk=first.identity_id),
        justification="Retired.",
    )
    identity_request_approve(identity_request=decommission, approver=approver)
    work_sent.clear()

    provision_identity_request(decommission.pk)

    assert _besides_notifications(work_sent) == []


def _besides_notifications(work_sent: list[Any]) -> list[Any]:
    """The work sent, without the outbox's deliveries (ready writes notifications too)."""
    return [sent for sent in work_sent if sent[0] != Work.DELIVER_NOTIFICATIONS]
