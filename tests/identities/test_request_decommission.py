"""identity_request_decommission_create and the decommission flow."""

from __future__ import annotations

from typing import Any

import pytest

from identities.errors import PermissionDeniedError, PolicyViolationError
from identities.models import ChildStatus, Identity, IdentityRequest
from identities.services import (
    identity_request_approve,
    identity_request_decommission_create,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
)
from identities.work import Work
from tests.identities.conftest import audit_actions, last_audit

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready_identity(approved_request: IdentityRequest) -> Identity:
    identity_request_mark_provisioning(identity_request=approved_request)
    identity_request_mark_ready(identity_request=approved_request)
    assert approved_request.identity is not None
    return approved_request.identity


def test_a_team_member_files_a_decommission_request(
    ready_identity: Identity, teammate: Any
) -> None:
    identity_request = identity_request_decommission_create(
        requester=teammate, identity=ready_identity, justification="App retired."
    )

    assert identity_request.kind == IdentityRequest.Kind.DECOMMISSION
    assert identity_request.status == IdentityRequest.Status.PENDING
    assert identity_request.identity == ready_identity
    event = last_audit()
    assert (event.action, event.actor, event.identity) == (
        "identity_request.created",
        teammate,
        ready_identity,
    )


def test_another_team_cannot_decommission_the_identity(
    ready_identity: Identity, outsider: Any
) -> None:
    with pytest.raises(PermissionDeniedError):
        identity_request_decommission_create(
            requester=outsider, identity=ready_identity, justification="Mine now."
        )


def test_approval_marks_the_identity_and_everything_in_it_for_removal_then_ready_removes_it(
    ready_identity: Identity,
    requester: Any,
    approver: Any,
    django_capture_on_commit_callbacks: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    identity_request = identity_request_decommission_create(
        requester=requester, identity=ready_identity, justification="App retired."
    )
    with django_capture_on_commit_callbacks(execute=True):
        identity_request_approve(identity_request=identity_request, approver=approver)
    assert [work for work, _ in work_sent].count(Work.PROVISION) == 1

    ready_identity.refresh_from_db()
    assert ready_identity.status == Identity.Status.DECOMMISSIONING
    assert {f.status for f in ready_identity.federated_credentials.all()} == {ChildStatus.REMOVING}
    assert {r.status for r in ready_identity.role_assignments.all()} == {ChildStatus.REMOVING}
    assert audit_actions()[-2:] == ["identity.decommissioning", "identity_request.approved"]

    identity_request_mark_provisioning(identity_request=identity_request)
    identity_request_mark_ready(identity_request=identity_request)
    ready_identity.refresh_from_db()
    assert ready_identity.status == Identity.Status.DECOMMISSIONED
    assert audit_actions()[-2:] == ["identity.decommissioned", "identity_request.ready"]


def test_only_one_decommission_request_at_a_time(ready_identity: Identity, requester: Any) -> None:
    identity_request_decommission_create(
        requester=requester, identity=ready_identity, justification="App retired."
    )
    with pytest.raises(PolicyViolationError) as caught:
        identity_request_decommission_create(
            requester=requester, identity=ready_identity, justification="Again."
        )
    assert ("identity", "decommission_in_progress") in {
        (v.field, v.rule) for v in caught.value.violations
    }
