"""Cross-team requests and protected scopes through the web UI."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import IdentityRequest
from identities.services import identity_request_create
from tests.support.people import DraftFactory
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


@pytest.fixture
def cross_team_request(outsider: Any, make_draft: DraftFactory) -> IdentityRequest:
    """bob (team search) asks for a role on payments' vault (rg-payments)."""
    return identity_request_create(
        requester=outsider,
        draft=make_draft(
            team="search", namespace="search", app_name="indexer", service_account="indexer"
        ),
    )


def test_the_owning_team_finds_it_in_its_queue_and_approves_it_beside_security(
    client_for: ClientFor, requester: Any, approver: Any, cross_team_request: IdentityRequest
) -> None:
    owner = client_for(requester)  # alice, team payments, not an approver
    home = owner.get(reverse("home")).content.decode()
    assert reverse("approval_queue") in home  # the nav opens the queue for her

    queue = owner.get(reverse("approval_queue"))
    html = queue.content.decode()
    assert queue.status_code == 200
    assert 'data-testid="cross-team"' in html
    assert "you would approve for <strong>payments</strong>" in html
    assert "owned by team payments: cross-team, payments must approve too" in html

    security = client_for(approver)
    security.post(reverse("request_approve", args=[cross_team_request.pk]), {"comment": "ok"})
    cross_team_request.refresh_from_db()
    assert cross_team_request.status == IdentityRequest.Status.PENDING
    owner.post(reverse("request_approve", args=[cross_team_request.pk]), {"comment": "ours"})
    cross_team_request.refresh_from_db()
    assert cross_team_request.status == IdentityRequest.Status.APPROVED

    page = owner.get(reverse("request_detail", args=[cross_team_request.pk])).content.decode()
    assert "for team payments (owner)" in page
    assert "Rejectd" not in page


def test_a_team_with_nothing_to_approve_sees_no_approvals_section(
    client_for: ClientFor, teammate: Any, pending_request: IdentityRequest
) -> None:
    html = client_for(teammate).get(reverse("home")).content.decode()
    assert reverse("approval_queue") not in html


def test_a_protected_scope_is_refused_on_its_field_in_the_form(
    client_for: ClientFor, requester: Any, cluster: Any, catalog: Any
) -> None:
    identity_scope = (
        f"/subscriptions/{cluster.subscription_id}/resourceGroups/rg-payments/providers"
        "/Microsoft.ManagedIdentity/userAssignedIdentities/id-other"
    )
    response = client_for(requester).post(
        reverse("request_new"),
        {
            "team": "payments",
            "cluster": cluster.name,
            "namespace": "payments",
            "service_account": "checkout",
            "app_name": "checkout",
            "roles-TOTAL_FORMS": "1",
            "roles-INITIAL_FORMS": "0",
            "roles-MIN_NUM_FORMS": "1",
            "roles-MAX_NUM_FORMS": "20",
            "roles-0-role": "Reader",
            "roles-0-scope": identity_scope,
            "tags": "",
            "justification": "Reads another identity.",
        },
    )
    assert response.status_code == 400
    found = {(v.finding.field, v.finding.rule) for v in response.context["feedback"].violations}
    assert ("roles[0].scope", "protected_scope") in found
    assert not IdentityRequest.objects.exists()
