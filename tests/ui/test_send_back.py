"""Send back from the approval queue, edit and resubmit from the request page, and the revisions
with what each next one changed."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import AuditEvent, IdentityRequest, RequestStatus
from tests.support.people import SUBSCRIPTION, VAULT_SCOPE
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db

OTHER_VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments-2"
)


def test_send_back_then_edit_and_resubmit_from_the_pages(
    client_for: ClientFor, requester: Any, approver: Any, pending_request: IdentityRequest
) -> None:
    queue = client_for(approver).get(reverse("approval_queue")).content.decode()
    assert reverse("request_send_back", args=[pending_request.pk]) in queue

    sent = client_for(approver).post(
        reverse("request_send_back", args=[pending_request.pk]),
        {"comment": "Use kv-payments-2.", "next": reverse("approval_queue")},
    )
    assert sent.status_code == 302
    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.SENT_BACK

    page = client_for(requester).get(reverse("request_detail", args=[pending_request.pk]))
    edit = page.context["edit"]
    assert edit is not None
    first = edit["role_forms"].forms[0]
    assert (first["role"].value(), first["scope"].value()) == (
        "Key Vault Secrets User",
        VAULT_SCOPE,
    )
    assert "asked for changes: “Use kv-payments-2.”" in page.content.decode()
    titles = [entry.title for entry in page.context["timeline"]]
    assert "Sent back for changes" in titles
    assert "Resubmission" in titles  # what comes next
    # The requester's start page says it waits for them.
    home = client_for(requester).get(reverse("home")).content.decode()
    assert "1 request was sent back for changes: edit and resubmit" in home
    # The approver sees the revisions but no edit form.
    assert client_for(approver).get(page.request["PATH_INFO"]).context["edit"] is None

    resubmitted = client_for(requester).post(
        reverse("request_resubmit", args=[pending_request.pk]),
        {
            "roles-TOTAL_FORMS": "1",
            "roles-INITIAL_FORMS": "0",
            "roles-0-role": "Key Vault Secrets User",
            "roles-0-scope": OTHER_VAULT,
            "justification": "Checkout reads kv-payments-2.",
        },
    )
    assert resubmitted.status_code == 302
    pending_request.refresh_from_db()
    assert (pending_request.status, pending_request.revision) == (RequestStatus.PENDING, 2)
    assert list(pending_request.roles.values_list("scope", flat=True)) == [OTHER_VAULT]
    actions = list(
        AuditEvent.objects.filter(identity_request=pending_request)
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[-3:] == [
        "identity_request.sent_back",
        "identity_request.revised",
        "identity_request.resubmitted",
    ]

    page = client_for(approver).get(reverse("request_detail", args=[pending_request.pk]))
    [revision] = page.context["revisions"]
    assert set(revision["changes_in_next"]) == {"justification", "roles"}
    html = page.content.decode()
    assert "Revision 1</strong> sent back by <strong>sam</strong>" in html
    assert f"Key Vault Secrets User on {OTHER_VAULT}" in html


def test_a_resubmission_breaking_policy_keeps_it_sent_back_and_says_why(
    client_for: ClientFor, requester: Any, approver: Any, pending_request: IdentityRequest
) -> None:
    client_for(approver).post(
        reverse("request_send_back", args=[pending_request.pk]), {"comment": "Narrower."}
    )
    response = client_for(requester).post(
        reverse("request_resubmit", args=[pending_request.pk]),
        {
            "roles-TOTAL_FORMS": "1",
            "roles-INITIAL_FORMS": "0",
            "roles-0-role": "Owner",
            "roles-0-scope": VAULT_SCOPE,
            "justification": "Owner is simpler.",
        },
        follow=True,
    )
    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.SENT_BACK
    assert "privileged" in response.content.decode()


def test_send_back_without_a_comment_is_refused_with_a_message(
    client_for: ClientFor, approver: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(approver).post(
        reverse("request_send_back", args=[pending_request.pk]), {"comment": ""}, follow=True
    )
    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.PENDING
    assert "needs a comment" in response.content.decode()
