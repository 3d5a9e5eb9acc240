"""Object-level visibility and role checks: what another team owns is not found, what needs a
role the user lacks is forbidden. Selectors and services decide; the views only map errors."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import IdentityRequest, RequestStatus
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "route",
    ["request_detail", "request_progress", "request_manifests"],
)
def test_a_requester_of_another_team_gets_404_on_reads_of_a_request(
    route: str, client_for: ClientFor, outsider: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(outsider).get(reverse(route, args=[ready_request.pk]))

    assert response.status_code == 404


def test_the_404_page_does_not_tell_missing_from_invisible(
    client_for: ClientFor, outsider: Any, pending_request: IdentityRequest
) -> None:
    client = client_for(outsider)

    invisible = client.get(reverse("request_detail", args=[pending_request.pk]))
    missing = client.get(reverse("request_detail", args=[pending_request.pk + 1000]))

    assert invisible.status_code == missing.status_code == 404
    assert invisible.context["message"].replace(str(pending_request.pk), "N") == missing.context[
        "message"
    ].replace(str(pending_request.pk + 1000), "N")


@pytest.mark.parametrize(
    "route", ["request_cancel", "request_retry", "request_verify", "request_approve"]
)
def test_a_requester_of_another_team_gets_404_on_actions_on_a_request(
    route: str, client_for: ClientFor, outsider: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(outsider).post(reverse(route, args=[pending_request.pk]))

    assert response.status_code == 404
    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.PENDING


@pytest.mark.parametrize("route", ["identity_detail", "identity_repair", "identity_decommission"])
def test_a_requester_of_another_team_gets_404_on_an_identity(
    route: str, client_for: ClientFor, outsider: Any, ready_request: IdentityRequest
) -> None:
    client = client_for(outsider)
    url = reverse(route, args=[ready_request.identity_id])
    response = client.get(url) if route == "identity_detail" else client.post(url)

    assert response.status_code == 404


def test_another_teams_requests_are_not_listed(
    client_for: ClientFor, outsider: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(outsider).get(reverse("request_list"))

    assert pending_request not in response.context["page_obj"].object_list
    assert f"#{pending_request.pk}" not in response.content.decode()


def test_another_teams_identities_are_not_listed(
    client_for: ClientFor, outsider: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(outsider).get(reverse("identity_list"))

    assert response.context["rows"] == []


def test_another_teams_audit_rows_are_not_shown(
    client_for: ClientFor, outsider: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(outsider).get(reverse("audit_log"))

    assert response.context["rows"] == []
    assert response.context["chain"] is None  # the chain spans every team


def test_the_approval_queue_is_forbidden_for_requesters_and_auditors(
    client_for: ClientFor, requester: Any, auditor: Any, pending_request: IdentityRequest
) -> None:
    for user in (requester, auditor):
        response = client_for(user).get(reverse("approval_queue"))
        assert response.status_code == 403
        assert b"Only approvers" in response.content


def test_a_requester_cannot_approve_even_a_request_they_can_see(
    client_for: ClientFor, teammate: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(teammate).post(reverse("request_approve", args=[pending_request.pk]))

    assert response.status_code == 403
    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.PENDING


def test_a_requester_cannot_reject(
    client_for: ClientFor, teammate: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(teammate).post(
        reverse("request_reject", args=[pending_request.pk]), {"comment": "no"}
    )

    assert response.status_code == 403


def test_the_new_request_form_is_forbidden_for_approvers_and_auditors(
    client_for: ClientFor, approver: Any, auditor: Any
) -> None:
    for user in (approver, auditor):
        client = client_for(user)
        assert client.get(reverse("request_new")).status_code == 403
        assert client.post(reverse("request_check")).status_code == 403


def test_an_auditor_cannot_cancel_or_retry(
    client_for: ClientFor, auditor: Any, failed_request: IdentityRequest
) -> None:
    client = client_for(auditor)

    response = client.post(reverse("request_retry", args=[failed_request.pk]))

    assert response.status_code == 403
    failed_request.refresh_from_db()
    assert failed_request.status == RequestStatus.FAILED


def test_json_endpoints_answer_refusals_in_json(
    client_for: ClientFor, outsider: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(outsider).get(
        reverse("request_progress", args=[pending_request.pk]), HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 404
    assert response.json() == {"error": f"Identity request {pending_request.pk} was not found."}


def test_get_is_not_allowed_on_actions(
    client_for: ClientFor, requester: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(requester).get(reverse("request_cancel", args=[pending_request.pk]))

    assert response.status_code == 405
