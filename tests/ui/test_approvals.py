"""The approval queue: risk, what will be granted, the four-eyes state; approve and reject."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.urls import reverse

from identities.models import Approval, AuditEvent, IdentityRequest, RequestStatus
from identities.policy import RoleDraft
from identities.services import identity_request_create
from identities.work import Work
from tests.support.emulator import Emulator
from tests.support.people import RESOURCE_GROUP_SCOPE, DraftFactory
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


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


def test_the_queue_shows_risk_the_grant_diff_and_four_eyes(
    client_for: ClientFor,
    approver: Any,
    pending_request: IdentityRequest,
    exception_request: IdentityRequest,
) -> None:
    response = client_for(approver).get(reverse("approval_queue"))

    items = {item.identity_request.pk: (item, diff) for item, diff in response.context["items"]}
    low, low_diff = items[pending_request.pk]
    high, high_diff = items[exception_request.pk]
    assert (low.risk.level, high.risk.level) == ("low", "high")
    assert [(line.sign, line.what) for line in low_diff] == [
        ("+", "Managed identity"),
        ("+", "Federated credential"),
        ("+", "Role assignment"),
    ]
    assert low_diff[0].detail == "aks-test-payments-checkout"
    assert [line.risky for line in high_diff] == [False, False, True]
    html = response.content.decode()
    assert "0 of 2 approvals" in html
    assert "an exception needs two different approvers" in html
    assert "privileged_role" in html and "broad_scope" in html


def test_approving_records_the_comment_and_starts_provisioning_on_commit(
    client_for: ClientFor,
    approver: Any,
    pending_request: IdentityRequest,
    django_capture_on_commit_callbacks: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(approver).post(
            reverse("request_approve", args=[pending_request.pk]),
            {"comment": "Scoped to one vault.", "next": reverse("approval_queue")},
            follow=True,
        )

    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.APPROVED
    assert [work for work, _ in work_sent].count(Work.PROVISION) == 1
    approval = Approval.objects.get(identity_request=pending_request)
    assert (approval.approver, approval.comment) == (approver, "Scoped to one vault.")
    assert f"Approval of request #{pending_request.pk} recorded." in response.content.decode()
    assert response.context["items"] == []


def test_an_exception_needs_a_second_different_approver(
    client_for: ClientFor,
    approver: Any,
    second_approver: Any,
    exception_request: IdentityRequest,
    django_capture_on_commit_callbacks: Any,
) -> None:
    url = reverse("request_approve", args=[exception_request.pk])
    client_for(approver).post(url, {"comment": "ok"})
    exception_request.refresh_from_db()
    assert exception_request.status == RequestStatus.PENDING

    again = client_for(approver).get(reverse("approval_queue"))
    [(item, _diff)] = again.context["items"]
    assert item.can_approve is False
    assert "needs another approver" in item.blocked_reason
    assert "1 of 2 approvals: sam" in again.content.decode()

    with django_capture_on_commit_callbacks(execute=False):
        client_for(second_approver).post(url, {"comment": "ok too"})
    exception_request.refresh_from_db()
    assert exception_request.status == RequestStatus.APPROVED


def test_approving_twice_is_explained_not_crashed(
    client_for: ClientFor, approver: Any, exception_request: IdentityRequest
) -> None:
    client = client_for(approver)
    url = reverse("request_approve", args=[exception_request.pk])
    client.post(url)

    response = client.post(url, follow=True)

    assert "already decided on request" in response.content.decode()


def test_rejecting_needs_a_comment(
    client_for: ClientFor, approver: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(approver).post(
        reverse("request_reject", args=[pending_request.pk]), {"comment": " "}, follow=True
    )

    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.PENDING
    assert "A rejection needs a comment" in response.content.decode()


def test_rejecting_with_a_comment_tells_the_requester_why(
    client_for: ClientFor, approver: Any, requester: Any, pending_request: IdentityRequest
) -> None:
    client_for(approver).post(
        reverse("request_reject", args=[pending_request.pk]), {"comment": "Use a narrower scope."}
    )

    page = client_for(requester).get(reverse("request_detail", args=[pending_request.pk]))
    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.REJECTED
    assert "Use a narrower scope." in page.content.decode()
    assert AuditEvent.objects.filter(action="identity_request.rejected", actor=approver).exists()


def test_an_approver_who_filed_a_request_cannot_approve_it(
    client_for: ClientFor, approver: Any, team: Any, make_draft: DraftFactory, role_groups: None
) -> None:
    from django.contrib.auth.models import Group

    from identities import roles
    from identities.models import TeamMembership

    approver.groups.add(Group.objects.get(name=roles.REQUESTERS))
    TeamMembership.objects.create(team=team, user=approver)
    roles.forget_roles(approver)
    own = identity_request_create(requester=approver, draft=make_draft())

    client = client_for(approver)
    queue = client.get(reverse("approval_queue"))
    response = client.post(reverse("request_approve", args=[own.pk]))

    [(item, _diff)] = queue.context["items"]
    assert item.blocked_reason == "You filed this request."
    assert 'disabled aria-describedby="blocked-' in queue.content.decode()
    assert response.status_code == 403


def test_the_queue_asks_resource_graph_once_for_all_the_scopes_on_the_page(
    resource_graph: Emulator,
    client_for: ClientFor,
    approver: Any,
    requester: Any,
    make_draft: DraftFactory,
) -> None:
    scopes = [
        f"{RESOURCE_GROUP_SCOPE}/providers/Microsoft.KeyVault/vaults/kv-queue-{n}" for n in range(4)
    ]
    resource_graph.register_resources(*scopes)
    for n, scope in enumerate(scopes):
        identity_request_create(
            requester=requester,
            draft=make_draft(
                service_account=f"app-{n}",
                app_name=f"app-{n}",
                roles=(RoleDraft("Key Vault Secrets User", scope),),
            ),
        )
    cache.clear()  # filing looked each scope up; the page must ask Azure afresh
    since = len(resource_graph.requests())

    response = client_for(approver).get(reverse("approval_queue"))

    asked = [entry for entry in resource_graph.requests(since) if entry["op"] == "graph.query"]
    assert len(asked) == 1  # not one per request
    assert len(response.context["items"]) == 4
    assert all(not item.policy.violations for item, _ in response.context["items"])
