"""The identity inventory: FIC usage (n/20), drift state, repair, decommission, more SAs."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import (
    AuditEvent,
    DriftState,
    Identity,
    IdentityRequest,
    RequestKind,
    RequestStatus,
)
from tests.support.people import FederatedCredentialFactory
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


def test_each_identity_shows_its_credential_usage_against_the_limit(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    identity = Identity.objects.get(requests=ready_request)
    for _ in range(16):
        FederatedCredentialFactory(identity=identity)

    response = client_for(requester).get(reverse("identity_list"))

    [row] = response.context["rows"]
    assert (row.usage.label, row.usage.level) == ("17/20", "high")
    assert 'data-testid="fic-usage">17/20<' in response.content.decode()


def test_drifted_identities_show_their_findings_and_a_repair_button(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    Identity.objects.filter(requests=ready_request).update(
        drift_state=DriftState.DRIFTED,
        drift_details={"findings": [{"kind": "fic_missing", "detail": "aks-test-payments-x"}]},
    )

    client = client_for(requester)
    drifted = client.get(reverse("identity_list"), {"drift": "drifted"})
    in_sync = client.get(reverse("identity_list"), {"drift": "in_sync"})

    [row] = drifted.context["rows"]
    assert row.drift_findings == [{"kind": "fic_missing", "detail": "aks-test-payments-x"}]
    assert row.can_repair is True
    assert reverse("identity_repair", args=[ready_request.identity_id]) in (
        drifted.content.decode()
    )
    assert in_sync.context["rows"] == []


def test_repair_is_queued_and_audited(
    client_for: ClientFor,
    requester: Any,
    ready_request: IdentityRequest,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(requester).post(
            reverse("identity_repair", args=[ready_request.identity_id]), follow=True
        )

    assert len(callbacks) == 1
    assert "queued" in response.content.decode()
    assert AuditEvent.objects.filter(action="identity.repair_requested", actor=requester).exists()


def test_an_auditor_cannot_repair(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(auditor).post(
        reverse("identity_repair", args=[ready_request.identity_id])
    )

    assert response.status_code == 403


def test_decommission_files_a_request_that_needs_approval(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(requester).post(
        reverse("identity_decommission", args=[ready_request.identity_id]),
        {"justification": "Checkout moved to another provider."},
    )

    decommission = IdentityRequest.objects.get(kind=RequestKind.DECOMMISSION)
    assert response["Location"] == reverse("request_detail", args=[decommission.pk])
    assert decommission.status == RequestStatus.PENDING
    assert decommission.identity_id == ready_request.identity_id


def test_decommission_without_a_reason_is_refused(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(requester).post(
        reverse("identity_decommission", args=[ready_request.identity_id]),
        {"justification": ""},
        follow=True,
    )

    assert not IdentityRequest.objects.filter(kind=RequestKind.DECOMMISSION).exists()
    assert "justification" in response.content.decode()


def test_another_service_account_can_be_added_to_a_ready_identity(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(requester).post(
        reverse("identity_add_service_account", args=[ready_request.identity_id]),
        {"namespace": "payments-jobs", "service_account": "nightly", "justification": "Batch."},
    )

    added = IdentityRequest.objects.get(kind=RequestKind.ADD_SERVICE_ACCOUNT)
    assert response["Location"] == reverse("request_detail", args=[added.pk])
    assert (added.namespace, added.service_account) == ("payments-jobs", "nightly")


def test_adding_a_service_account_in_a_foreign_namespace_is_explained(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(requester).post(
        reverse("identity_add_service_account", args=[ready_request.identity_id]),
        {"namespace": "search", "service_account": "nightly", "justification": "Batch."},
        follow=True,
    )

    assert not IdentityRequest.objects.filter(kind=RequestKind.ADD_SERVICE_ACCOUNT).exists()
    assert "namespace: Namespace &#x27;search&#x27;" in response.content.decode()


def test_the_identity_page_shows_credentials_roles_requests_and_audit(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(requester).get(
        reverse("identity_detail", args=[ready_request.identity_id])
    )

    html = response.content.decode()
    assert "system:serviceaccount:payments:checkout" in html
    assert "Key Vault Secrets User" in html
    assert response.context["requests"] == [ready_request]
    assert any(r.event.action == "identity.created" for r in response.context["audit_rows"])
    assert response.context["can_decommission"] is True


def test_the_identity_list_hides_decommissioned_ones_unless_asked(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    """The web list filters with the API's FilterSet, plus the page's own `all` and `q`."""
    Identity.objects.filter(requests=ready_request).update(status=Identity.Status.DECOMMISSIONED)
    client = client_for(requester)

    def listed(**query: str) -> list[Identity]:
        return [row.identity for row in client.get(reverse("identity_list"), query).context["rows"]]

    assert listed() == []
    [shown] = listed(status="all")
    assert listed(status="decommissioned") == [shown]
    assert listed(status="all", q=shown.name[:6]) == [shown]
    assert listed(status="all", q="no-such-identity") == []
    # A value the filter does not know is ignored on a page (the API answers 400 instead).
    assert listed(status="bogus", drift="bogus") == []
