"""The approver's inbox ("Waiting for me", /approvals/?show=mine): what the signed-in user can
decide now, with filters; and approve / reject from the request page as from the queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from identities.models import AuditEvent, IdentityRequest
from identities.policy import RoleDraft
from identities.selectors import ApprovalFilters, approval_queue
from identities.services import identity_request_approve, identity_request_create
from tests.support.people import RESOURCE_GROUP_SCOPE, DraftFactory
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db

INBOX = "/approvals/?show=mine"


@pytest.fixture
def exception_request(requester: Any, make_draft: DraftFactory) -> IdentityRequest:
    return identity_request_create(
        requester=requester,
        draft=make_draft(
            service_account="reports",
            app_name="reports",
            roles=(RoleDraft("Contributor", RESOURCE_GROUP_SCOPE),),
            is_exception=True,
            justification="Nightly reports write to every storage account of the group.",
        ),
    )


@pytest.fixture
def cross_team_request(outsider: Any, make_draft: DraftFactory) -> IdentityRequest:
    """bob (team search) asks for a role on payments' vault: payments must approve too."""
    return identity_request_create(
        requester=outsider,
        draft=make_draft(
            team="search", namespace="search", app_name="indexer", service_account="indexer"
        ),
    )


def inbox_ids(client: Any, query: str = "") -> list[int]:
    response = client.get(INBOX + query)
    assert response.status_code == 200
    return [item.identity_request.pk for item, _ in response.context["items"]]


def test_a_four_eyes_request_leaves_my_inbox_once_i_approved_and_waits_in_the_seconds(
    client_for: ClientFor,
    approver: Any,
    second_approver: Any,
    pending_request: IdentityRequest,
    exception_request: IdentityRequest,
) -> None:
    identity_request_approve(identity_request=exception_request, approver=approver)

    assert inbox_ids(client_for(approver)) == [pending_request.pk]
    second = client_for(second_approver).get(INBOX)
    html = second.content.decode()
    assert [item.identity_request.pk for item, _ in second.context["items"]] == [
        pending_request.pk,
        exception_request.pk,
    ]
    assert "Four eyes: approved by sam, needs a second approver." in html
    # The whole queue still shows it to the first approver, with approving blocked.
    everything = client_for(approver).get(reverse("approval_queue")).content.decode()
    assert "You already approved this request; it needs another approver." in everything


def test_an_owning_team_finds_the_other_teams_request_waiting_for_it(
    client_for: ClientFor, requester: Any, cross_team_request: IdentityRequest
) -> None:
    response = client_for(requester).get(INBOX)

    assert [item.identity_request.pk for item, _ in response.context["items"]] == [
        cross_team_request.pk
    ]
    assert "Your team payments owns a scope it asks for" in response.content.decode()


def test_my_own_requests_never_wait_for_me(
    client_for: ClientFor, outsider: Any, approver: Any, cross_team_request: IdentityRequest
) -> None:
    assert inbox_ids(client_for(approver)) == [cross_team_request.pk]
    # bob filed it, and his team owns none of its scopes: nothing waits for him.
    assert inbox_ids(client_for(outsider)) == []


def test_filters_narrow_by_team_cluster_risk_and_age(
    client_for: ClientFor,
    approver: Any,
    pending_request: IdentityRequest,
    exception_request: IdentityRequest,
    cross_team_request: IdentityRequest,
) -> None:
    IdentityRequest.objects.filter(pk=pending_request.pk).update(
        created_at=timezone.now() - timedelta(days=4)
    )
    client = client_for(approver)

    assert inbox_ids(client, "&team=search") == [cross_team_request.pk]
    assert inbox_ids(client, "&risk=high") == [exception_request.pk, cross_team_request.pk]
    assert inbox_ids(client, "&age=3d") == [pending_request.pk]
    assert inbox_ids(client, "&cluster=aks-test&team=payments&risk=low") == [pending_request.pk]
    assert inbox_ids(client, "&cluster=no-such") == sorted(
        [pending_request.pk, exception_request.pk, cross_team_request.pk]
    )


def test_an_invalid_filter_is_named_and_not_applied(
    client_for: ClientFor, approver: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(approver).get(INBOX + "&risk=extreme")

    html = response.content.decode()
    assert response.status_code == 200
    assert "<strong>Risk</strong>: Select a valid choice." in html
    assert [item.identity_request.pk for item, _ in response.context["items"]] == [
        pending_request.pk
    ]


def test_the_selector_filters_without_the_web_layer(
    approver: Any, pending_request: IdentityRequest, exception_request: IdentityRequest
) -> None:
    high = approval_queue(approver, ApprovalFilters(risk="high"), waiting_for_me=True)
    assert [item.identity_request.pk for item in high] == [exception_request.pk]
    assert high[0].waiting_because == "Needs an approver."


def test_the_request_page_has_the_decision_form_for_an_approver_only(
    client_for: ClientFor,
    requester: Any,
    teammate: Any,
    approver: Any,
    auditor: Any,
    pending_request: IdentityRequest,
) -> None:
    url = reverse("request_detail", args=[pending_request.pk])
    approve_url = reverse("request_approve", args=[pending_request.pk])

    assert approve_url in client_for(approver).get(url).content.decode()
    for viewer in (requester, teammate, auditor):
        page = client_for(viewer).get(url)
        assert page.status_code == 200
        assert approve_url not in page.content.decode()
        assert 'id="decision"' not in page.content.decode()


def test_approving_from_the_request_page_comes_back_to_it(
    client_for: ClientFor, approver: Any, pending_request: IdentityRequest
) -> None:
    url = reverse("request_detail", args=[pending_request.pk])

    response = client_for(approver).post(
        reverse("request_approve", args=[pending_request.pk]),
        {"comment": "Scoped to one vault.", "next": url},
    )

    assert response.status_code == 302
    assert response["Location"] == url
    pending_request.refresh_from_db()
    assert pending_request.status == IdentityRequest.Status.APPROVED
    assert AuditEvent.objects.filter(
        identity_request=pending_request, action="identity_request.approved", actor=approver
    ).exists()
    assert 'id="decision"' not in client_for(approver).get(url).content.decode()


def test_rejecting_from_the_request_page_needs_the_comment(
    client_for: ClientFor, approver: Any, pending_request: IdentityRequest
) -> None:
    url = reverse("request_detail", args=[pending_request.pk])
    client = client_for(approver)

    refused = client.post(
        reverse("request_reject", args=[pending_request.pk]), {"comment": "", "next": url}
    )
    assert refused["Location"] == url
    pending_request.refresh_from_db()
    assert pending_request.status == IdentityRequest.Status.PENDING
    assert "A rejection needs a comment" in client.get(url).content.decode()


def test_outsiders_and_anonymous_cannot_reach_the_inbox_or_another_teams_decision(
    client_for: ClientFor,
    client: Any,
    auditor: Any,
    outsider: Any,
    pending_request: IdentityRequest,
) -> None:
    anonymous = client.get(INBOX)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("login"))
    assert client_for(auditor).get(INBOX).status_code == 403
    other = client_for(outsider)
    assert other.get(reverse("request_detail", args=[pending_request.pk])).status_code == 404
    forged = other.post(
        reverse("request_approve", args=[pending_request.pk]), {"comment": "", "next": "/"}
    )
    assert forged.status_code == 404
    pending_request.refresh_from_db()
    assert pending_request.status == IdentityRequest.Status.PENDING
