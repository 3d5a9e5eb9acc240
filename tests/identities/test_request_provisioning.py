"""The worker's side (mark provisioning / ready / failed) and retry by people."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from identities.errors import ConflictError, PermissionDeniedError
from identities.lifecycle import ALLOWED_TRANSITIONS
from identities.models import Identity, IdentityRequest
from identities.services import (
    identity_request_mark_failed,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
    identity_request_retry,
)
from tests.identities.conftest import audit_actions, last_audit

pytestmark = pytest.mark.django_db


def test_the_worker_marks_an_approved_request_provisioning(
    approved_request: IdentityRequest,
) -> None:
    identity_request_mark_provisioning(identity_request=approved_request)

    approved_request.refresh_from_db()
    assert approved_request.status == IdentityRequest.Status.PROVISIONING
    event = last_audit()
    assert (event.action, event.actor, event.actor_label) == (
        "identity_request.provisioning",
        None,
        "system",
    )


def test_marking_provisioning_twice_is_harmless(approved_request: IdentityRequest) -> None:
    identity_request_mark_provisioning(identity_request=approved_request)
    rows = audit_actions()
    identity_request_mark_provisioning(identity_request=approved_request)
    assert audit_actions() == rows


def test_ready_makes_the_request_and_its_new_identity_ready(
    approved_request: IdentityRequest,
) -> None:
    identity_request_mark_provisioning(identity_request=approved_request)
    identity_request_mark_ready(identity_request=approved_request, data={"client_id": "c1"})

    approved_request.refresh_from_db()
    assert approved_request.status == IdentityRequest.Status.READY
    assert approved_request.identity is not None
    assert approved_request.identity.status == Identity.Status.READY
    assert audit_actions()[-2:] == ["identity.ready", "identity_request.ready"]
    assert last_audit().data["client_id"] == "c1"


def test_failure_records_the_error_on_the_request_and_the_identity(
    approved_request: IdentityRequest,
) -> None:
    identity_request_mark_provisioning(identity_request=approved_request)
    identity_request_mark_failed(identity_request=approved_request, error="AuthorizationFailed")

    approved_request.refresh_from_db()
    assert approved_request.status == IdentityRequest.Status.FAILED
    assert approved_request.last_error == "AuthorizationFailed"
    assert approved_request.identity is not None
    assert approved_request.identity.status == Identity.Status.FAILED
    assert audit_actions()[-2:] == ["identity.failed", "identity_request.failed"]
    assert last_audit().data["error"] == "AuthorizationFailed"


def test_a_failed_request_can_be_retried_by_its_team(
    approved_request: IdentityRequest, teammate: Any, django_capture_on_commit_callbacks: Any
) -> None:
    identity_request_mark_provisioning(identity_request=approved_request)
    identity_request_mark_failed(identity_request=approved_request, error="boom")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        identity_request_retry(identity_request=approved_request, actor=teammate)

    approved_request.refresh_from_db()
    assert approved_request.status == IdentityRequest.Status.PROVISIONING
    assert approved_request.last_error == ""
    assert approved_request.identity is not None
    assert approved_request.identity.status == Identity.Status.PROVISIONING
    event = last_audit()
    assert (event.action, event.actor) == ("identity_request.provisioning", teammate)
    assert event.data["retry"] is True
    assert event.data["previous_error"] == "boom"
    assert len(callbacks) == 1


def test_only_failed_requests_can_be_retried(
    approved_request: IdentityRequest, requester: Any
) -> None:
    with pytest.raises(ConflictError, match="only failed requests"):
        identity_request_retry(identity_request=approved_request, actor=requester)


def test_outsiders_cannot_retry(approved_request: IdentityRequest, outsider: Any) -> None:
    identity_request_mark_provisioning(identity_request=approved_request)
    identity_request_mark_failed(identity_request=approved_request, error="boom")
    with pytest.raises(PermissionDeniedError):
        identity_request_retry(identity_request=approved_request, actor=outsider)


def test_a_pending_request_cannot_skip_approval(pending_request: IdentityRequest) -> None:
    with pytest.raises(ConflictError, match="cannot become provisioning"):
        identity_request_mark_provisioning(identity_request=pending_request)
    assert audit_actions() == ["identity_request.created"]


def test_the_transition_map_matches_the_issue() -> None:
    assert {k: set(v) for k, v in ALLOWED_TRANSITIONS.items()} == {
        "pending": {"approved", "rejected", "cancelled", "sent_back"},
        # Issue 16: sent back for changes, then resubmitted (pending again) or withdrawn.
        "sent_back": {"pending", "cancelled"},
        "approved": {"provisioning"},
        "provisioning": {"ready", "failed"},
        # Retried; or withdrawn, a failed change of roles only (issue 16; `cancellable`).
        "failed": {"provisioning", "cancelled"},
        "ready": set(),
        "rejected": set(),
        "cancelled": set(),
    }


def test_a_refused_ready_moves_nothing_before_it_is_refused(
    approved_request: IdentityRequest,
) -> None:
    # Another run failed the request (the identity is still provisioning): marking it ready is
    # refused before the identity moves or any audit row is written. It used to move the
    # identity and audit that first, which a caller's savepoint then rolled back, while an
    # audit batch kept the dropped row as the chain's tail.
    identity_request_mark_provisioning(identity_request=approved_request)
    IdentityRequest.objects.filter(pk=approved_request.pk).update(
        status=IdentityRequest.Status.FAILED
    )
    with CaptureQueriesContext(connection) as queries, pytest.raises(ConflictError):
        identity_request_mark_ready(identity_request=approved_request)

    writes = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith(("UPDATE", "INSERT"))
    ]
    assert writes == []
    identity = Identity.objects.get(pk=approved_request.identity_id)
    assert identity.status == Identity.Status.PROVISIONING
