"""Separation of duties through every entry point that decides on a request: the service
(identities.services), the web UI's approve/reject forms, the API with a session and the API with
a token. Nobody approves or rejects their own request; a privileged exception needs two
different approvers, neither of them its requester; privileged roles without an exception are
refused when filed. The Django admin cannot decide at all (requests are read-only there).

The services' own unit tests (tests/identities/test_request_approve.py) go deeper on the
service; here every entry point is held to the same rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from identities import roles
from identities.errors import DomainError
from identities.models import Approval, AuditEvent, IdentityRequest, RequestStatus
from identities.policy import RoleDraft
from identities.services import (
    identity_request_approve,
    identity_request_create,
    identity_request_reject,
)
from tests.security.world import token_of
from tests.support.people import RESOURCE_GROUP_SCOPE, DraftFactory, UserFactory

pytestmark = [pytest.mark.security, pytest.mark.django_db]

ENTRY_POINTS = ("service", "ui", "api_session", "api_token")


@dataclass(frozen=True)
class Outcome:
    """What an entry point answered: the HTTP status (None for the service) and whether it was
    refused (an error raised, or a refusal status or message)."""

    status: int | None
    refused: bool
    detail: str


def decide(entry: str, action: str, user: Any, identity_request: IdentityRequest) -> Outcome:
    """`user` approves or rejects (`action`) `identity_request` through `entry`."""
    comment = "Looked at it."
    if entry == "service":
        service: Callable[..., Any] = (
            identity_request_approve if action == "approve" else identity_request_reject
        )
        try:
            service(identity_request=identity_request, approver=user, comment=comment)
        except DomainError as error:
            return Outcome(None, True, error.message)
        return Outcome(None, False, "")
    if entry == "ui":
        client = Client()
        client.force_login(user)
        url = reverse(f"request_{action}", args=[identity_request.pk])
        response = client.post(url, {"comment": comment}, follow=True)
        first = response.redirect_chain[0][1] if response.redirect_chain else response.status_code
        messages = [str(m) for m in response.context["messages"]] if response.context else []
        refused = first >= 400 or any("cannot" in m or "already" in m for m in messages)
        return Outcome(first, refused, " ".join(messages) or response.content.decode())
    client = APIClient()
    if entry == "api_session":
        client.force_login(user)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_of(user, ['read', 'approve'])}")
    response = client.post(
        f"/api/v1/identity-requests/{identity_request.pk}/{action}/",
        {"comment": comment},
        format="json",
    )
    return Outcome(response.status_code, response.status_code >= 400, response.content.decode())


@pytest.fixture
def self_approver(role_groups: None, team: Any) -> Any:
    """A member of the security team who also files requests for team payments."""
    user = UserFactory(username="selma", in_groups=[roles.REQUESTERS, roles.APPROVERS])
    team.memberships.create(user=user)
    return user


def exception_draft(make_draft: DraftFactory) -> Any:
    return make_draft(
        roles=(RoleDraft("Contributor", RESOURCE_GROUP_SCOPE),),
        is_exception=True,
        justification="The migration job recreates resources in its resource group nightly.",
    )


def state_of(identity_request: IdentityRequest) -> tuple[str, list[str]]:
    identity_request.refresh_from_db()
    approvers = list(
        Approval.objects.filter(identity_request=identity_request)
        .order_by("id")
        .values_list("approver__username", flat=True)
    )
    return identity_request.status, approvers


@pytest.mark.parametrize("action", ["approve", "reject"])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_nobody_decides_on_their_own_request(
    entry: str, action: str, self_approver: Any, make_draft: DraftFactory
) -> None:
    own = identity_request_create(requester=self_approver, draft=make_draft())
    rows_before = AuditEvent.objects.count()

    outcome = decide(entry, action, self_approver, own)

    assert outcome.refused, outcome
    assert outcome.status in (None, 403), outcome
    assert "own requests" in outcome.detail, outcome
    assert state_of(own) == (RequestStatus.PENDING, [])
    assert AuditEvent.objects.count() == rows_before


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_privileged_exception_needs_two_different_approvers(
    entry: str,
    requester: Any,
    approver: Any,
    second_approver: Any,
    make_draft: DraftFactory,
    django_capture_on_commit_callbacks: Any,
) -> None:
    exception = identity_request_create(requester=requester, draft=exception_draft(make_draft))
    assert exception.approvals_required == 2

    first = decide(entry, "approve", approver, exception)
    assert not first.refused, first
    assert state_of(exception) == (RequestStatus.PENDING, ["sam"])

    again = decide(entry, "approve", approver, exception)
    assert again.refused, again
    assert again.status in (None, 302, 409), again  # the UI explains on the page it returns to
    assert "already decided" in again.detail, again
    assert state_of(exception) == (RequestStatus.PENDING, ["sam"])

    with django_capture_on_commit_callbacks(execute=False):
        second = decide(entry, "approve", second_approver, exception)
    assert not second.refused, second
    assert state_of(exception) == (RequestStatus.APPROVED, ["sam", "sara"])


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_the_requester_of_an_exception_cannot_be_its_second_approver(
    entry: str, self_approver: Any, approver: Any, make_draft: DraftFactory
) -> None:
    exception = identity_request_create(requester=self_approver, draft=exception_draft(make_draft))
    assert not decide(entry, "approve", approver, exception).refused
    assert state_of(exception) == (RequestStatus.PENDING, ["sam"])

    outcome = decide(entry, "approve", self_approver, exception)

    assert outcome.refused, outcome
    assert outcome.status in (None, 403), outcome
    assert state_of(exception) == (RequestStatus.PENDING, ["sam"])


def test_an_approver_who_is_also_a_requester_is_refused_however_they_got_the_role(
    approver: Any, team: Any, make_draft: DraftFactory
) -> None:
    """Roles added after filing change nothing: the check is on the person, not the role."""
    late = UserFactory(username="late", in_groups=[roles.REQUESTERS])
    team.memberships.create(user=late)
    own = identity_request_create(requester=late, draft=make_draft())
    late.groups.add(Group.objects.get(name=roles.APPROVERS))
    roles.forget_roles(late)

    for entry in ENTRY_POINTS:
        assert decide(entry, "approve", late, own).refused, entry
    assert state_of(own) == (RequestStatus.PENDING, [])


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_privileged_role_without_an_exception_is_refused_when_filed(
    entry: str, requester: Any, make_draft: DraftFactory
) -> None:
    roles_asked = (RoleDraft("Contributor", RESOURCE_GROUP_SCOPE),)
    if entry == "service":
        from identities.errors import PolicyViolationError

        with pytest.raises(PolicyViolationError) as refused:
            identity_request_create(requester=requester, draft=make_draft(roles=roles_asked))
        rules = {violation.rule for violation in refused.value.violations}
    elif entry == "ui":
        client = Client()
        client.force_login(requester)
        response = client.post(
            reverse("request_new"),
            {
                "team": "payments",
                "cluster": "aks-test",
                "namespace": "payments",
                "service_account": "migrator",
                "app_name": "migrator",
                "roles-TOTAL_FORMS": "1",
                "roles-INITIAL_FORMS": "0",
                "roles-MIN_NUM_FORMS": "1",
                "roles-MAX_NUM_FORMS": "20",
                "roles-0-role": "Contributor",
                "roles-0-scope": RESOURCE_GROUP_SCOPE,
                "justification": "Recreates resources nightly.",
            },
        )
        assert response.status_code == 400
        rules = {placed.finding.rule for placed in response.context["feedback"].violations}
    else:
        from tests.api.conftest import new_request_body

        client = APIClient()
        if entry == "api_session":
            client.force_login(requester)
        else:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_of(requester, ['request'])}")
        response = client.post(
            "/api/v1/identity-requests/",
            new_request_body(
                service_account="migrator",
                app_name="migrator",
                roles=[{"role": "Contributor", "scope": RESOURCE_GROUP_SCOPE}],
            ),
            format="json",
        )
        assert response.status_code == 400, response.content
        rules = {error["rule"] for error in response.json()["errors"]}

    assert "privileged_role" in rules
    assert not IdentityRequest.objects.filter(app_name="migrator").exists()


def test_the_admin_cannot_decide_on_requests(admin_user: Any, pending_request: Any) -> None:
    """The Django admin shows requests and approvals read-only, even to a superuser."""
    client = Client()
    client.force_login(admin_user)
    change = f"/admin/identities/identityrequest/{pending_request.pk}/change/"

    response = client.post(change, {"status": "approved"})
    added = client.post("/admin/identities/approval/add/", {"identity_request": pending_request.pk})

    assert response.status_code == 403
    assert added.status_code in (403, 404)
    assert state_of(pending_request) == (RequestStatus.PENDING, [])
