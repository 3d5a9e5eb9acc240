"""identity_request_cancel: the requester (or their team) withdraws a pending request."""

from __future__ import annotations

from typing import Any

import pytest

from identities.errors import ConflictError, PermissionDeniedError
from identities.models import IdentityRequest
from identities.services import identity_request_cancel
from tests.identities.conftest import audit_actions, last_audit

pytestmark = pytest.mark.django_db


def test_the_requester_can_cancel_a_pending_request(
    pending_request: IdentityRequest, requester: Any
) -> None:
    identity_request_cancel(identity_request=pending_request, actor=requester)

    pending_request.refresh_from_db()
    assert pending_request.status == IdentityRequest.Status.CANCELLED
    event = last_audit()
    assert (event.action, event.actor) == ("identity_request.cancelled", requester)
    assert event.data == {"from": "pending", "to": "cancelled"}


def test_a_teammate_can_cancel_it_too(pending_request: IdentityRequest, teammate: Any) -> None:
    identity_request_cancel(identity_request=pending_request, actor=teammate)
    assert last_audit().actor == teammate


def test_someone_from_another_team_cannot_cancel(
    pending_request: IdentityRequest, outsider: Any, approver: Any
) -> None:
    for actor in (outsider, approver):
        with pytest.raises(PermissionDeniedError):
            identity_request_cancel(identity_request=pending_request, actor=actor)
    assert audit_actions() == ["identity_request.created"]


def test_an_approved_request_can_no_longer_be_cancelled(
    approved_request: IdentityRequest, requester: Any
) -> None:
    with pytest.raises(ConflictError, match="no longer pending"):
        identity_request_cancel(identity_request=approved_request, actor=requester)
