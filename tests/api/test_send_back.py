"""POST …/send-back/, PUT/PATCH of a sent-back request by its requester, POST …/resubmit/: the
revisions in the request's body, the problems for bad input, and who may do what."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import AuditEvent, IdentityRequest
from tests.support.people import SUBSCRIPTION, VAULT_SCOPE

pytestmark = pytest.mark.django_db

OTHER_VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments-2"
)


def url(identity_request: IdentityRequest, action: str = "") -> str:
    return f"/api/v1/identity-requests/{identity_request.pk}/{action + '/' if action else ''}"


def test_send_back_edit_and_resubmit_through_the_api(
    pending_request: IdentityRequest, requester: Any, approver: Any, client_for: Any
) -> None:
    sent = client_for(approver).post(
        url(pending_request, "send-back"), {"comment": "Use kv-payments-2."}, format="json"
    )
    assert sent.status_code == 200, sent.content
    assert sent.json()["status"] == "sent_back"

    edited = client_for(requester).patch(
        url(pending_request),
        {"roles": [{"role": "Key Vault Secrets User", "scope": OTHER_VAULT}]},
        format="json",
    )
    assert edited.status_code == 200, edited.content
    assert [r["scope"] for r in edited.json()["roles"]] == [OTHER_VAULT]

    resubmitted = client_for(requester).post(url(pending_request, "resubmit"))
    assert resubmitted.status_code == 200, resubmitted.content
    body = resubmitted.json()
    assert (body["status"], body["revision"], body["approvals"]) == ("pending", 2, [])
    [revision] = body["revisions"]
    assert (revision["number"], revision["sent_back_by"], revision["comment"]) == (
        1,
        "sam",
        "Use kv-payments-2.",
    )
    assert revision["changes_in_next"]["roles"] == {
        "added": [{"role": "Key Vault Secrets User", "scope": OTHER_VAULT}],
        "dropped": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}],
    }
    actions = list(
        AuditEvent.objects.filter(identity_request=pending_request)
        .order_by("id")
        .values_list("action", "actor__username")
    )
    assert actions[-3:] == [
        ("identity_request.sent_back", "sam"),
        ("identity_request.revised", "alice"),
        ("identity_request.resubmitted", "alice"),
    ]


def test_sending_back_needs_a_comment(
    pending_request: IdentityRequest, approver: Any, client_for: Any
) -> None:
    response = client_for(approver).post(url(pending_request, "send-back"), {}, format="json")
    assert response.status_code == 400
    assert "comment" in {error["field"] for error in response.json()["errors"]}


def test_an_edit_breaking_policy_is_a_problem_naming_the_field(
    pending_request: IdentityRequest, requester: Any, approver: Any, client_for: Any
) -> None:
    client_for(approver).post(url(pending_request, "send-back"), {"comment": "x"}, format="json")
    response = client_for(requester).put(
        url(pending_request),
        {"roles": [{"role": "Key Vault Secrets User", "scope": "/subscriptions/nope"}]},
        format="json",
    )
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["roles[0].scope"]


def test_only_the_requester_edits_and_only_once_sent_back(
    pending_request: IdentityRequest,
    requester: Any,
    teammate: Any,
    approver: Any,
    outsider: Any,
    client_for: Any,
) -> None:
    edit = {"justification": "Edited."}
    assert client_for(requester).patch(url(pending_request), edit, format="json").status_code == 409
    client_for(approver).post(url(pending_request, "send-back"), {"comment": "x"}, format="json")
    assert client_for(teammate).patch(url(pending_request), edit, format="json").status_code == 403
    assert client_for(outsider).patch(url(pending_request), edit, format="json").status_code == 404
    assert client_for(approver).post(url(pending_request, "resubmit")).status_code == 403
    assert (
        client_for(requester).post(url(pending_request, "send-back"), {"comment": "x"}).status_code
        == 403
    )


def _sent_back_and_changed(
    pending_request: IdentityRequest, requester: Any, approver: Any, client_for: Any
) -> None:
    client_for(approver).post(url(pending_request, "send-back"), {"comment": "Why?"}, format="json")
    client_for(requester).patch(
        url(pending_request),
        {"roles": [{"role": "Key Vault Secrets Officer", "scope": OTHER_VAULT}]},
        format="json",
    )
    assert client_for(requester).post(url(pending_request, "resubmit")).status_code == 200


def test_an_approval_of_the_revision_the_approver_saw_is_refused_once_it_changed(
    pending_request: IdentityRequest, requester: Any, approver: Any, client_for: Any
) -> None:
    """Red team: the approver loaded revision 1; it was sent back, widened and resubmitted;
    the approve from the stale page approved revision 2. With the revision sent, it is 409."""
    _sent_back_and_changed(pending_request, requester, approver, client_for)

    stale = client_for(approver).post(
        url(pending_request, "approve"), {"revision": 1}, format="json"
    )
    assert stale.status_code == 409, stale.content
    assert "revision 2" in stale.content.decode()
    pending_request.refresh_from_db()
    assert pending_request.status == "pending"

    current = client_for(approver).post(
        url(pending_request, "approve"), {"revision": 2}, format="json"
    )
    assert current.status_code == 200, current.content
    approved = AuditEvent.objects.get(
        identity_request=pending_request, action="identity_request.approved"
    )
    assert approved.data["revision"] == 2


def test_the_web_decision_form_carries_the_revision_it_showed(
    pending_request: IdentityRequest, requester: Any, approver: Any, client_for: Any
) -> None:
    from django.test import Client

    browser = Client()
    browser.force_login(approver)
    page = browser.get(f"/requests/{pending_request.pk}/").content.decode()
    assert 'name="revision" value="1"' in page
    _sent_back_and_changed(pending_request, requester, approver, client_for)

    browser.post(f"/requests/{pending_request.pk}/approve/", {"revision": "1", "comment": ""})

    pending_request.refresh_from_db()
    assert pending_request.status == "pending"
    assert "you saw revision 1" in browser.get(f"/requests/{pending_request.pk}/").content.decode()
