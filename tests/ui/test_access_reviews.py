"""The access review and transfer pages: open with field-named errors, the chart and counts,
the team's "to review" list, attesting (reduce continues on the change form), the evidence export,
the transfer form on the identity page and the transfer steps."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from identities.models import AccessReviewCampaign, AuditEvent, IdentityRequest, OwnershipTransfer
from identities.services import access_review_open
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(ready_request: IdentityRequest, approver: Any) -> AccessReviewCampaign:
    return access_review_open(
        actor=approver, name="Q4 review", due_at=timezone.now() + timedelta(days=7)
    )


def test_security_opens_a_review_from_the_form(
    client_for: ClientFor, approver: Any, ready_request: IdentityRequest
) -> None:
    client = client_for(approver)
    page = client.get(reverse("review_list"))
    assert b"Open an access review" in page.content
    bad = client.post(
        reverse("review_list"), {"name": "Q4", "due_at": "2001-01-01T00:00", "grace_days": "0"}
    )
    assert bad.status_code == 400
    assert b"must be in the future" in bad.content
    response = client.post(
        reverse("review_list"),
        {
            "name": "Q4",
            "due_at": "2099-01-01T00:00",
            "grace_days": "3",
            "revoke_when_overdue": "on",
        },
    )
    campaign = AccessReviewCampaign.objects.get()
    assert response["Location"] == reverse("review_detail", args=[campaign.pk])
    assert campaign.revoke_when_overdue and campaign.grace_days == 3


def test_the_requester_does_not_see_the_open_form(
    client_for: ClientFor, requester: Any, campaign: AccessReviewCampaign
) -> None:
    page = client_for(requester).get(reverse("review_list"))
    assert b"Open an access review" not in page.content
    assert b"Q4 review" in page.content


def test_the_team_sees_progress_and_its_list_and_attests(
    client_for: ClientFor, requester: Any, campaign: AccessReviewCampaign
) -> None:
    client = client_for(requester)
    page = client.get(reverse("review_detail", args=[campaign.pk]))
    content = page.content.decode()
    assert "<svg" in content and 'role="img"' in content
    assert "style=" not in content  # CSP: no inline styles
    assert "0 %" in content
    item = campaign.items.get()
    assert f'action="{reverse("review_attest", args=[item.pk])}"' in content
    response = client.post(reverse("review_attest", args=[item.pk]), {"decision": "keep"})
    assert response.status_code == 302
    page = client.get(reverse("review_detail", args=[campaign.pk]))
    assert b"Nothing waits for you in this review." in page.content
    page = client.get(reverse("review_detail", args=[campaign.pk]) + "?show=all")
    assert f"audit row #{AuditEvent.objects.latest('id').pk}".encode() in page.content
    assert b"100 %" in page.content


def test_reduce_continues_on_the_change_form_prefilled_with_its_roles(
    client_for: ClientFor, requester: Any, campaign: AccessReviewCampaign
) -> None:
    item = campaign.items.get()
    client = client_for(requester)
    response = client.post(
        reverse("review_attest", args=[item.pk]), {"decision": "reduce"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("identity_change", args=[item.identity_id])
    assert b"reduce" in response.content
    # The change form starts from the roles the identity holds, so "reduce" is a removal away.
    for role in item.roles:
        assert role["scope"].encode() in response.content


def test_the_evidence_downloads_as_csv(
    client_for: ClientFor, requester: Any, campaign: AccessReviewCampaign
) -> None:
    item = campaign.items.get()
    client = client_for(requester)
    client.post(reverse("review_attest", args=[item.pk]), {"decision": "keep"})
    response = client.get(reverse("review_evidence", args=[campaign.pk]) + "?format=csv")
    assert response["Content-Disposition"].endswith('-evidence.csv"')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    event = AuditEvent.objects.get(action="access_review.attested")
    assert rows[0]["audit_row_id"] == str(event.pk)
    assert rows[0]["audit_row_hash"] == event.hash


def test_a_transfer_is_asked_from_the_identity_page_and_completed_on_the_transfers_page(
    client_for: ClientFor,
    requester: Any,
    outsider: Any,
    approver: Any,
    ready_request: IdentityRequest,
) -> None:
    identity_id = ready_request.identity_id
    page = client_for(requester).get(reverse("identity_detail", args=[identity_id]))
    content = page.content.decode()
    assert 'id="id_transfer-justification"' in content
    # Prefixed: the page's other forms keep their own `id_justification` (no clash added).
    assert 'name="transfer-justification"' in content
    assert 'aria-describedby="id_transfer-justification_helptext"' in content
    assert 'id="id_transfer-justification_helptext"' in content
    client_for(requester).post(
        reverse("identity_transfer", args=[identity_id]),
        {"transfer-to_team": "search", "transfer-justification": "Search runs it."},
    )
    transfer = OwnershipTransfer.objects.get()
    listing = client_for(outsider).get(reverse("transfer_list")).content.decode()
    assert reverse("transfer_consent", args=[transfer.pk]) in listing
    client_for(outsider).post(reverse("transfer_consent", args=[transfer.pk]))
    listing = client_for(approver).get(reverse("transfer_list")).content.decode()
    assert reverse("transfer_approve", args=[transfer.pk]) in listing
    client_for(approver).post(reverse("transfer_approve", args=[transfer.pk]))
    transfer.refresh_from_db()
    assert transfer.status == "completed"
    assert (
        client_for(outsider).get(reverse("identity_detail", args=[identity_id])).status_code == 200
    )
