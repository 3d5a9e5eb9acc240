"""Four-eyes through a pipeline: a person who is both approver and requester must not approve
what their own team's pipeline filed (red team: a service token minted by the approver filed
the request, then the same person approved it)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group

from identities import roles
from identities.models import IdentityRequest, RequestStatus
from tests.api.conftest import new_request_body
from tests.support.people import _member

pytestmark = pytest.mark.django_db

SERVICE_TOKENS = "/api/v1/service-tokens/"


def _pipeline_files(client: Any, token_client: Any) -> IdentityRequest:
    made = client.post(
        SERVICE_TOKENS,
        {
            "team": "payments",
            "service_principal": "release",
            "name": "release",
            "scopes": ["read", "request"],
        },
        format="json",
    )
    assert made.status_code == 201, made.content
    filed = token_client(made.json()["token"]).post(
        "/api/v1/identity-requests/", new_request_body(), format="json"
    )
    assert filed.status_code == 201, filed.content
    return IdentityRequest.objects.get(pk=filed.json()["id"])


@pytest.mark.parametrize("who", ["minted the token", "is on the team"])
def test_an_approver_cannot_approve_what_their_own_teams_pipeline_filed(
    who: str,
    requester: Any,
    teammate: Any,
    approver: Any,
    team: Any,
    cluster: Any,
    catalog: Any,
    client_for: Any,
    token_client: Any,
) -> None:
    # `approver` is also a requester of the payments team (a real set-up the portal allows).
    approver.groups.add(Group.objects.get(name=roles.REQUESTERS))
    _member(approver, team)
    minter = approver if who == "minted the token" else teammate
    identity_request = _pipeline_files(client_for(minter), token_client)

    refused = client_for(approver).post(
        f"/api/v1/identity-requests/{identity_request.pk}/approve/", {}, format="json"
    )

    assert refused.status_code == 403, refused.content
    assert "pipeline of your team" in refused.json()["detail"]
    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.PENDING


def test_an_approver_outside_the_team_approves_a_pipelines_request(
    requester: Any, approver: Any, cluster: Any, catalog: Any, client_for: Any, token_client: Any
) -> None:
    identity_request = _pipeline_files(client_for(requester), token_client)

    approved = client_for(approver).post(
        f"/api/v1/identity-requests/{identity_request.pk}/approve/", {}, format="json"
    )

    assert approved.status_code == 200, approved.content
    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.APPROVED
