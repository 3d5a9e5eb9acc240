"""identity_request_reject: an approver says no, with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from identities.errors import ConflictError, DomainError, PermissionDeniedError
from identities.models import Approval, IdentityRequest
from identities.services import identity_request_reject
from tests.identities.conftest import audit_actions, last_audit

pytestmark = pytest.mark.django_db


def test_rejection_records_the_decision_and_its_audit_row(
    pending_request: IdentityRequest, approver: Any
) -> None:
    identity_request_reject(
        identity_request=pending_request, approver=approver, comment="Use the shared vault."
    )

    pending_request.refresh_from_db()
    assert pending_request.status == IdentityRequest.Status.REJECTED
    approval = Approval.objects.get()
    assert (approval.approver, approval.decision, approval.comment) == (
        approver,
        "reject",
        "Use the shared vault.",
    )
    event = last_audit()
    assert (event.action, event.actor, event.identity_request) == (
        "identity_request.rejected",
        approver,
        pending_request,
    )
    assert event.data == {"from": "pending", "to": "rejected", "comment": "Use the shared vault."}
    # What the admin and the logs read: "rejected", not the value with a "d" glued on.
    assert str(approval) == f"sam rejected #{pending_request.pk}"


def test_rejection_without_a_comment_is_refused(
    pending_request: IdentityRequest, approver: Any
) -> None:
    with pytest.raises(DomainError, match="needs a comment"):
        identity_request_reject(identity_request=pending_request, approver=approver, comment="  ")
    assert audit_actions() == ["identity_request.created"]


def test_requesters_cannot_reject(pending_request: IdentityRequest, teammate: Any) -> None:
    with pytest.raises(PermissionDeniedError):
        identity_request_reject(identity_request=pending_request, approver=teammate, comment="no")


def test_a_rejected_request_cannot_be_rejected_again(
    pending_request: IdentityRequest, approver: Any, second_approver: Any
) -> None:
    identity_request_reject(identity_request=pending_request, approver=approver, comment="no")
    with pytest.raises(ConflictError, match="no longer pending"):
        identity_request_reject(
            identity_request=pending_request, approver=second_approver, comment="no"
        )
