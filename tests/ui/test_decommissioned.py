"""A decommissioned identity's pages: what they read, what they no longer offer, what to clean up
in the cluster; verification refused at once; the audit filter that finds every approval."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from identities.audit.actions import AuditAction
from identities.models import AuditEvent, Identity, IdentityRequest
from identities.policy import RoleDraft
from identities.services import (
    identity_request_approve,
    identity_request_create,
    identity_request_decommission_create,
)
from tests.support.people import RESOURCE_GROUP_SCOPE, DraftFactory
from tests.ui.conftest import ClientFor
from tests.ui.support import approve, provisioned

pytestmark = pytest.mark.django_db


@pytest.fixture
def decommission(
    ready_request: IdentityRequest,
    requester: Any,
    approver: Any,
    django_capture_on_commit_callbacks: Any,
) -> IdentityRequest:
    """The ready request's identity, decommissioned by a second request run to the end."""
    assert ready_request.identity is not None
    identity_request = identity_request_decommission_create(
        requester=requester, identity=ready_request.identity, justification="App retired."
    )
    return provisioned(approve(identity_request, approver, django_capture_on_commit_callbacks))


def test_the_original_request_reads_decommissioned_and_offers_no_verify_or_copy(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest, decommission: Any
) -> None:
    response = client_for(requester).get(reverse("request_detail", args=[ready_request.pk]))

    page = response.content.decode()
    assert 'class="badge status-decommissioned">Decommissioned<' in page
    assert "status-ready" not in page.split('data-testid="request-status"')[1].split("</p>")[0]
    assert "Verify now" not in page
    assert response.context["actions"].verify is False
    assert 'data-copy-target="out-client-id"' not in page
    assert "8f2c7a51-0e0b-4f6e-9b7d-2d3c4b5a6f70" in page  # still shown, for the record
    assert response.context["handover"] is None  # no manifests for a deleted identity
    cleanup = response.context["cluster_cleanup"]
    assert [(item.namespace, item.service_account) for item in cleanup] == [
        ("payments", "checkout")
    ]
    assert "kubectl annotate serviceaccount checkout -n payments" in cleanup[0].commands
    assert "Remove it from the cluster" in page


def test_the_decommission_request_reads_removed_and_its_timeline_too(
    client_for: ClientFor, requester: Any, decommission: IdentityRequest
) -> None:
    response = client_for(requester).get(reverse("request_detail", args=[decommission.pk]))

    page = response.content.decode()
    assert 'class="badge status-removed">Removed<' in page
    assert [entry.title for entry in response.context["timeline"]][-1] == "Removed"
    progress = client_for(requester).get(reverse("request_progress", args=[decommission.pk]))
    assert progress.json()["status_label"] == "Removed"

    listing = client_for(requester).get(reverse("request_list")).content.decode()
    assert ">Removed<" in listing and ">Decommissioned<" in listing


def test_the_identity_page_has_no_copy_buttons_and_says_what_to_remove(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest, decommission: Any
) -> None:
    identity = Identity.objects.get(pk=ready_request.identity_id)
    assert identity.status == Identity.Status.DECOMMISSIONED

    page = client_for(requester).get(reverse("identity_detail", args=[identity.pk]))

    body = page.content.decode()
    assert "data-copy-target" not in body
    assert "Remove it from the cluster" in body
    assert "azure.workload.identity/client-id-" in body


def test_a_stale_verify_form_ends_at_once_with_a_clear_message(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest, decommission: Any
) -> None:
    before = AuditEvent.objects.count()

    response = client_for(requester).post(
        reverse("request_verify", args=[ready_request.pk]), follow=True
    )

    text = response.content.decode()
    assert "is decommissioned" in text and "no federation to verify" in text
    assert AuditEvent.objects.count() == before  # nothing requested, so nothing waits
    assert response.context["verifying"] is False
    assert "A check is running" not in text


def test_the_api_refuses_to_verify_a_decommissioned_identity_with_a_conflict(
    requester: Any, ready_request: IdentityRequest, decommission: Any
) -> None:
    client = APIClient()
    client.force_authenticate(requester)

    response = client.post(
        reverse("api:identity-request-verify", args=[ready_request.pk]), format="json"
    )

    assert response.status_code == 409
    assert "is decommissioned" in response.json()["detail"]
    assert not AuditEvent.objects.filter(action=AuditAction.VERIFICATION_REQUESTED).exists()


def test_the_api_reads_as_the_page_decommissioned_and_removed_in_detail_and_list(
    requester: Any, ready_request: IdentityRequest, decommission: IdentityRequest
) -> None:
    client = APIClient()
    client.force_authenticate(requester)

    original = client.get(reverse("api:identity-request-detail", args=[ready_request.pk])).json()
    removal = client.get(reverse("api:identity-request-detail", args=[decommission.pk])).json()
    listed = client.get(reverse("api:identity-request-list")).json()["results"]

    # `status` keeps the workflow's value; `lifecycle_status` is what the request page shows.
    assert (original["status"], original["lifecycle_status"]) == ("ready", "decommissioned")
    assert original["identity"]["status"] == "decommissioned"
    assert (removal["status"], removal["lifecycle_status"]) == ("ready", "removed")
    assert {row["id"]: row["lifecycle_status"] for row in listed} == {
        ready_request.pk: "decommissioned",
        decommission.pk: "removed",
    }
    page = APIClient()
    page.force_login(requester)
    html = page.get(reverse("request_detail", args=[ready_request.pk])).content.decode()
    assert 'class="badge status-decommissioned">Decommissioned<' in html


def test_a_live_requests_lifecycle_status_is_its_status(
    requester: Any, ready_request: IdentityRequest
) -> None:
    client = APIClient()
    client.force_authenticate(requester)
    body = client.get(reverse("api:identity-request-detail", args=[ready_request.pk])).json()
    assert (body["status"], body["lifecycle_status"]) == ("ready", "ready")


def test_a_cached_copy_is_not_confirmed_once_the_identity_is_decommissioned(
    requester: Any, ready_request: IdentityRequest, request: pytest.FixtureRequest
) -> None:
    client = APIClient()
    client.force_authenticate(requester)
    url = reverse("api:identity-request-detail", args=[ready_request.pk])
    etag = client.get(url)["ETag"]
    assert client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304

    request.getfixturevalue("decommission")  # the request itself does not move

    response = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response.json()["lifecycle_status"] == "decommissioned"
    assert response["ETag"] != etag


def test_another_team_cannot_see_the_cleanup_and_anonymous_is_sent_to_sign_in(
    client_for: ClientFor, outsider: Any, ready_request: IdentityRequest, decommission: Any
) -> None:
    assert (
        client_for(outsider).get(reverse("request_detail", args=[ready_request.pk])).status_code
        == 404
    )
    assert (
        client_for(outsider)
        .get(reverse("identity_detail", args=[ready_request.identity_id]))
        .status_code
        == 404
    )
    anonymous = APIClient().get(reverse("request_detail", args=[ready_request.pk]))
    assert anonymous.status_code == 302


def test_the_approval_filter_finds_both_approvals_of_a_four_eyes_request(
    client_for: ClientFor,
    requester: Any,
    approver: Any,
    second_approver: Any,
    auditor: Any,
    make_draft: DraftFactory,
    django_capture_on_commit_callbacks: Any,
) -> None:
    identity_request = identity_request_create(
        requester=requester,
        draft=make_draft(
            roles=(RoleDraft("Contributor", RESOURCE_GROUP_SCOPE),),
            is_exception=True,
            justification="Migration job must recreate resources in its resource group nightly.",
        ),
    )
    with django_capture_on_commit_callbacks(execute=False):
        identity_request_approve(identity_request=identity_request, approver=approver)
        identity_request_approve(identity_request=identity_request, approver=second_approver)

    response = client_for(auditor).get(
        reverse("audit_log"), {"action": AuditAction.REQUEST_APPROVED}
    )

    rows = [row.event for row in response.context["rows"]]
    assert sorted((event.action, event.actor.username) for event in rows) == [
        (AuditAction.REQUEST_APPROVAL_RECORDED, "sam"),
        (AuditAction.REQUEST_APPROVED, "sara"),
    ]
    api = APIClient()
    api.force_authenticate(auditor)
    listed = api.get(
        reverse("api:audit-event-list"), {"action": AuditAction.REQUEST_APPROVED}
    ).json()
    assert len(listed["results"]) == 2
