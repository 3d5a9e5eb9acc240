"""Send back, edit, resubmit: changes requested instead of a hard reject, as revisions of the same
request with the approvals reset and every revision kept."""

from __future__ import annotations

from typing import Any

import pytest

from identities.errors import ConflictError, PermissionDeniedError, PolicyViolationError
from identities.models import (
    ApprovalDecision,
    IdentityRequest,
    Notification,
    NotificationChannel,
    NotificationEvent,
    RequestStatus,
)
from identities.policy import RoleDraft
from identities.selectors import request_revisions
from identities.services import (
    identity_request_approve,
    identity_request_cancel,
    identity_request_change_create,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
    identity_request_resubmit,
    identity_request_revise,
    identity_request_send_back,
)
from tests.identities.conftest import FileRequest, audit_actions, last_audit
from tests.support.people import STORAGE_SCOPE, SUBSCRIPTION, VAULT_SCOPE

pytestmark = pytest.mark.django_db

SECRETS_USER = "Key Vault Secrets User"
OTHER_VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments-2"
)


def test_an_approver_sends_a_request_back_and_the_requester_resubmits_a_new_revision(
    pending_request: IdentityRequest, requester: Any, approver: Any, second_approver: Any
) -> None:
    identity_request_send_back(
        identity_request=pending_request, approver=approver, comment="Use kv-payments-2."
    )
    assert pending_request.status == RequestStatus.SENT_BACK
    event = last_audit()
    assert (event.action, event.actor, event.data["comment"]) == (
        "identity_request.sent_back",
        approver,
        "Use kv-payments-2.",
    )

    identity_request_revise(
        identity_request=pending_request,
        actor=requester,
        roles_asked=[RoleDraft(SECRETS_USER, OTHER_VAULT)],
        justification="Checkout reads its secrets from kv-payments-2.",
    )
    event = last_audit()
    assert (event.action, event.actor) == ("identity_request.revised", requester)
    assert event.data["changes"]["roles"] == {
        "added": [{"role": SECRETS_USER, "scope": OTHER_VAULT}],
        "dropped": [{"role": SECRETS_USER, "scope": VAULT_SCOPE}],
    }

    identity_request_resubmit(identity_request=pending_request, actor=requester)
    pending_request.refresh_from_db()
    assert (pending_request.status, pending_request.revision) == (RequestStatus.PENDING, 2)
    assert audit_actions(identity_request=pending_request)[-3:] == [
        "identity_request.sent_back",
        "identity_request.revised",
        "identity_request.resubmitted",
    ]
    [revision] = request_revisions(pending_request)
    assert (revision["number"], revision["sent_back_by"], revision["comment"]) == (
        1,
        "sam",
        "Use kv-payments-2.",
    )
    assert revision["content"]["roles"] == [{"role": SECRETS_USER, "scope": VAULT_SCOPE}]
    assert set(revision["changes_in_next"]) == {"justification", "roles"}

    # The same approver may decide on the new revision: approvals were reset.
    identity_request_approve(identity_request=pending_request, approver=approver)
    assert pending_request.status == RequestStatus.APPROVED


def test_approvals_of_a_revision_are_reset_and_kept_on_the_revision(
    file_request: FileRequest, requester: Any, approver: Any, second_approver: Any
) -> None:
    exception = file_request(
        roles=(RoleDraft("Contributor", STORAGE_SCOPE),),
        is_exception=True,
        justification="Checkout rotates the storage account keys itself.",
    )
    identity_request_approve(identity_request=exception, approver=approver)
    identity_request_send_back(
        identity_request=exception, approver=second_approver, comment="Blob Data Reader suffices."
    )
    identity_request_revise(
        identity_request=exception,
        actor=requester,
        roles_asked=[RoleDraft("Storage Blob Data Reader", STORAGE_SCOPE)],
        is_exception=False,
    )
    identity_request_resubmit(identity_request=exception, actor=requester)

    assert not exception.approvals.exists()
    assert exception.approvals_required == 1
    [revision] = request_revisions(exception)
    assert [(a["approver"], a["decision"]) for a in revision["approvals"]] == [
        ("sam", ApprovalDecision.APPROVE)
    ]


def test_an_edit_that_breaks_policy_is_refused_and_nothing_changes(
    pending_request: IdentityRequest, requester: Any, approver: Any
) -> None:
    identity_request_send_back(identity_request=pending_request, approver=approver, comment="Why?")
    with pytest.raises(PolicyViolationError) as error:
        identity_request_revise(
            identity_request=pending_request,
            actor=requester,
            roles_asked=[RoleDraft("Owner", STORAGE_SCOPE)],
        )
    assert [(v.field, v.rule) for v in error.value.result.violations] == [
        ("roles[0].role", "privileged_role")
    ]
    assert list(pending_request.roles.values_list("scope", flat=True)) == [VAULT_SCOPE]


def test_only_the_requester_edits_and_resubmits_and_only_approvers_send_back(
    pending_request: IdentityRequest, requester: Any, teammate: Any, approver: Any, outsider: Any
) -> None:
    with pytest.raises(PermissionDeniedError):
        identity_request_send_back(identity_request=pending_request, approver=teammate, comment="x")
    with pytest.raises(PermissionDeniedError):
        identity_request_send_back(
            identity_request=pending_request, approver=requester, comment="x"
        )
    with pytest.raises(ConflictError):
        identity_request_resubmit(identity_request=pending_request, actor=requester)
    identity_request_send_back(identity_request=pending_request, approver=approver, comment="x")
    with pytest.raises(PermissionDeniedError):
        identity_request_revise(identity_request=pending_request, actor=teammate, justification="y")
    with pytest.raises(PermissionDeniedError):
        identity_request_resubmit(identity_request=pending_request, actor=outsider)
    with pytest.raises(ConflictError):
        identity_request_approve(identity_request=pending_request, approver=approver)


def test_a_sent_back_request_can_be_withdrawn(
    pending_request: IdentityRequest, requester: Any, approver: Any
) -> None:
    identity_request_send_back(identity_request=pending_request, approver=approver, comment="x")
    identity_request_cancel(identity_request=pending_request, actor=requester)
    assert pending_request.status == RequestStatus.CANCELLED


def test_a_change_request_is_sent_back_edited_and_still_blocks_a_second_change(
    approved_request: IdentityRequest, requester: Any, approver: Any
) -> None:
    identity_request_mark_provisioning(identity_request=approved_request)
    identity_request_mark_ready(identity_request=approved_request)
    identity = approved_request.identity
    assert identity is not None
    change = identity_request_change_create(
        requester=requester,
        identity=identity,
        add=[RoleDraft(SECRETS_USER, OTHER_VAULT)],
        remove=[],
        justification="Also kv-payments-2.",
    )
    identity_request_send_back(
        identity_request=change, approver=approver, comment="Move, do not add."
    )
    with pytest.raises(PolicyViolationError) as error:
        identity_request_change_create(
            requester=requester,
            identity=identity,
            add=[RoleDraft("Storage Blob Data Reader", STORAGE_SCOPE)],
            remove=[],
            justification="Another change.",
        )
    assert [v.rule for v in error.value.result.violations] == ["change_in_progress"]

    identity_request_revise(
        identity_request=change, actor=requester, remove=[RoleDraft(SECRETS_USER, VAULT_SCOPE)]
    )
    identity_request_resubmit(identity_request=change, actor=requester)
    [revision] = request_revisions(change)
    assert revision["changes_in_next"]["roles removed"]["added"] == [
        {"role": SECRETS_USER, "scope": VAULT_SCOPE}
    ]


def test_sending_back_tells_the_requester_and_resubmitting_tells_the_approvers_again(
    pending_request: IdentityRequest, requester: Any, approver: Any, second_approver: Any
) -> None:
    """Both are events someone must act on: the outbox gets a row for each, in the same
    transaction (issue 17's outbox, for issue 16's send-back)."""
    identity_request_send_back(
        identity_request=pending_request, approver=approver, comment="Use kv-payments-2."
    )
    sent_back = Notification.objects.filter(
        event=NotificationEvent.REQUEST_SENT_BACK, channel=NotificationChannel.INBOX
    )
    assert [n.recipient for n in sent_back.filter(recipient=requester)] == [requester]
    assert sent_back.get(recipient=requester).data["comment"] == "Use kv-payments-2."
    assert not sent_back.filter(recipient=approver).exists()

    filed_before = set(
        Notification.objects.filter(event=NotificationEvent.REQUEST_FILED).values_list(
            "pk", flat=True
        )
    )
    identity_request_resubmit(identity_request=pending_request, actor=requester)
    refiled = Notification.objects.filter(
        event=NotificationEvent.REQUEST_FILED, channel=NotificationChannel.INBOX
    ).exclude(pk__in=filed_before)
    recipients = {n.recipient for n in refiled}
    assert {approver, second_approver} <= recipients
    assert requester not in recipients
    assert {n.data["revision"] for n in refiled} == {2}
