"""identity_request_cancel on a failed change of roles: who may, what the identity's rows say
afterwards (what Azure confirmed stays, the rest of the delta is dropped), the audit row, the
drift check on commit, and a second change allowed again."""

from __future__ import annotations

from typing import Any

import pytest

from identities.errors import ConflictError, PermissionDeniedError
from identities.models import ChildStatus, Identity, IdentityRequest, RequestStatus
from identities.policy import RoleDraft
from identities.services import (
    identity_request_approve,
    identity_request_cancel,
    identity_request_mark_failed,
    identity_request_mark_provisioning,
    identity_request_retry,
)
from identities.work import Work
from tests.identities.conftest import audit_actions, last_audit
from tests.identities.test_request_change import (
    BLOB_READER,
    OTHER_VAULT,
    SECRETS_USER,
    file_change,
    ready_identity,  # noqa: F401 - a fixture
)
from tests.support.people import STORAGE_SCOPE, VAULT_SCOPE

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_change(
    ready_identity: Identity,  # noqa: F811 - the fixture imported above
    requester: Any,
    approver: Any,
    django_capture_on_commit_callbacks: Any,
) -> IdentityRequest:
    """Add Storage Blob Data Reader and a second vault, remove the first vault: the worker saw
    the blob reader created, then failed (the second vault's PUT and the removal unconfirmed)."""
    change = file_change(
        ready_identity,
        requester,
        add=(RoleDraft(BLOB_READER, STORAGE_SCOPE), RoleDraft(SECRETS_USER, OTHER_VAULT)),
        remove=(RoleDraft(SECRETS_USER, VAULT_SCOPE),),
    )
    with django_capture_on_commit_callbacks(execute=False):
        identity_request_approve(identity_request=change, approver=approver)
    identity_request_mark_provisioning(identity_request=change)
    # What the worker records when Azure answers a PUT (provisioning.services): active, named.
    ready_identity.role_assignments.filter(scope=STORAGE_SCOPE).update(
        status=ChildStatus.ACTIVE, name="6f1c2d3e-4b5a-4978-8a9b-0c1d2e3f4a5b"
    )
    identity_request_mark_failed(identity_request=change, error="ResourceNotFound: kv-payments-2")
    change.refresh_from_db()
    return change


def statuses(identity: Identity) -> dict[str, str]:
    return dict(identity.role_assignments.values_list("scope", "status"))


def test_the_requester_cancels_a_failed_change_keeping_what_azure_confirmed(
    failed_change: IdentityRequest,
    requester: Any,
    django_capture_on_commit_callbacks: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    identity = failed_change.identity
    assert identity is not None
    with django_capture_on_commit_callbacks(execute=True):
        identity_request_cancel(identity_request=failed_change, actor=requester)

    failed_change.refresh_from_db()
    assert failed_change.status == RequestStatus.CANCELLED
    assert statuses(identity) == {
        STORAGE_SCOPE: ChildStatus.ACTIVE,  # confirmed added: kept
        OTHER_VAULT: ChildStatus.REMOVED,  # never confirmed: not added, nothing writes it later
        VAULT_SCOPE: ChildStatus.ACTIVE,  # removal never confirmed: Azure still has it
    }
    identity.refresh_from_db()
    assert identity.status == Identity.Status.READY
    event = last_audit()
    assert (event.action, event.actor, event.identity_request) == (
        "identity_request.cancelled",
        requester,
        failed_change,
    )
    assert event.data == {
        "from": "failed",
        "to": "cancelled",
        "added": [{"role": BLOB_READER, "scope": STORAGE_SCOPE}],
        "removed": [],
        "not_added": [{"role": SECRETS_USER, "scope": OTHER_VAULT}],
        "not_removed": [{"role": SECRETS_USER, "scope": VAULT_SCOPE}],
    }
    assert (Work.CHECK_IDENTITY_DRIFT, (identity.pk,)) in work_sent


def test_a_removal_azure_confirmed_stays_removed(
    failed_change: IdentityRequest, requester: Any
) -> None:
    identity = failed_change.identity
    assert identity is not None
    identity.role_assignments.filter(scope=VAULT_SCOPE).update(status=ChildStatus.REMOVED)

    identity_request_cancel(identity_request=failed_change, actor=requester)

    assert statuses(identity)[VAULT_SCOPE] == ChildStatus.REMOVED
    assert last_audit().data["removed"] == [{"role": SECRETS_USER, "scope": VAULT_SCOPE}]
    assert last_audit().data["not_removed"] == []


@pytest.mark.parametrize("who", ["teammate", "approver", "admin_user"])
def test_the_team_approvers_and_admins_may_cancel_a_failed_change(
    failed_change: IdentityRequest, who: str, request: pytest.FixtureRequest
) -> None:
    actor = request.getfixturevalue(who)
    identity_request_cancel(identity_request=failed_change, actor=actor)
    assert (last_audit().action, last_audit().actor) == ("identity_request.cancelled", actor)


def test_another_team_cannot_cancel_a_failed_change(
    failed_change: IdentityRequest, outsider: Any
) -> None:
    before = audit_actions()
    with pytest.raises(PermissionDeniedError, match="team, approvers or admins"):
        identity_request_cancel(identity_request=failed_change, actor=outsider)
    assert audit_actions() == before
    failed_change.refresh_from_db()
    assert failed_change.status == RequestStatus.FAILED


def test_once_cancelled_another_change_can_be_filed_and_the_old_one_not_retried(
    failed_change: IdentityRequest, requester: Any
) -> None:
    identity = failed_change.identity
    assert identity is not None
    identity_request_cancel(identity_request=failed_change, actor=requester)

    second = file_change(identity, requester, add=(RoleDraft(SECRETS_USER, OTHER_VAULT),))
    assert second.status == RequestStatus.PENDING
    with pytest.raises(ConflictError, match="only failed requests can be retried"):
        identity_request_retry(identity_request=failed_change, actor=requester)
    with pytest.raises(ConflictError):
        identity_request_cancel(identity_request=failed_change, actor=requester)


def test_a_failed_new_identity_request_is_not_cancellable(
    approved_request: IdentityRequest, requester: Any
) -> None:
    identity_request_mark_provisioning(identity_request=approved_request)
    identity_request_mark_failed(identity_request=approved_request, error="boom")
    with pytest.raises(ConflictError, match="only a failed change of roles can be cancelled"):
        identity_request_cancel(identity_request=approved_request, actor=requester)
    approved_request.refresh_from_db()
    assert approved_request.status == RequestStatus.FAILED
