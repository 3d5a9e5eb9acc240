"""The request page: timeline, live progress (JSON), outputs, verification, manifests, actions."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.urls import reverse

from identities.models import AuditEvent, IdentityRequest, RequestStatus
from provisioning.models import ProvisioningStep, StepStatus, Verification, VerificationOutcome
from tests.ui.conftest import ClientFor
from tests.ui.support import approve

pytestmark = pytest.mark.django_db


def test_a_pending_request_shows_its_timeline_and_what_comes_next(
    client_for: ClientFor, requester: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(requester).get(reverse("request_detail", args=[pending_request.pk]))

    timeline = [(entry.title, entry.state) for entry in response.context["timeline"]]
    assert timeline == [
        ("Filed", "done"),
        ("Approval", "upcoming"),
        ("Provisioning", "upcoming"),
        ("Ready", "upcoming"),
    ]
    assert response.context["actions"].cancel is True
    assert response.context["poll_ms"] > 0  # waits for the approval, live


def test_progress_answers_status_steps_and_the_live_regions(
    client_for: ClientFor,
    requester: Any,
    approver: Any,
    pending_request: IdentityRequest,
    django_capture_on_commit_callbacks: Any,
) -> None:
    identity_request = approve(pending_request, approver, django_capture_on_commit_callbacks)
    ProvisioningStep.objects.create(
        identity_request=identity_request,
        key="uami",
        label="Managed identity",
        position=0,
        status=StepStatus.DONE,
        attempts=1,
    )
    ProvisioningStep.objects.create(
        identity_request=identity_request,
        key="fic",
        label="Federated credential",
        position=1,
        status=StepStatus.RUNNING,
        attempts=2,
    )

    response = client_for(requester).get(reverse("request_progress", args=[identity_request.pk]))

    body = response.json()
    assert body["status"] == RequestStatus.APPROVED
    assert [(s["label"], s["status"], s["attempts"]) for s in body["steps"]] == [
        ("Managed identity", "done", 1),
        ("Federated credential", "running", 2),
    ]
    assert body["poll_ms"] == 1000
    assert set(body["html"]) == {
        "request-status",
        "request-progress",
        "request-result",
        "request-asked",
        "request-audit",
    }
    assert "1 of 2 steps done" in body["html"]["request-progress"]
    assert "1 of 2 steps done" in body["summary"]


def test_a_ready_request_shows_outputs_manifests_and_stops_polling_once_verified(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    fic = ready_request.federated_credentials.get()
    Verification.objects.create(
        identity_request=ready_request,
        federated_credential=fic,
        outcome=VerificationOutcome.WORKS,
        summary="Federation works: exchanged.",
    )

    response = client_for(requester).get(reverse("request_detail", args=[ready_request.pk]))

    html = response.content.decode()
    identity = ready_request.identity
    assert identity is not None
    for value in (identity.client_id, identity.principal_id, identity.tenant_id):
        assert value in html
    assert 'data-copy-target="out-client-id"' in html
    assert [m.kind for m in response.context["handover"].manifests] == [
        "serviceaccount",
        "deployment",
        "job",
        "cronjob",
    ]
    assert "Federation works: exchanged." in html
    assert response.context["poll_ms"] == 0
    assert response.context["actions"].verify is True
    assert response.context["actions"].decommission is True


def test_a_failed_verification_explains_each_mismatch(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    Verification.objects.create(
        identity_request=ready_request,
        federated_credential=ready_request.federated_credentials.get(),
        outcome=VerificationOutcome.FAILED,
        error_code="AADSTS70021",
        summary="No federated identity credential matches.",
        mismatches=[
            {
                "field": "subject",
                "expected": "system:serviceaccount:payments:other",
                "presented": "system:serviceaccount:payments:checkout",
                "explanation": "The pod runs as another ServiceAccount.",
            }
        ],
    )

    html = (
        client_for(requester)
        .get(reverse("request_detail", args=[ready_request.pk]))
        .content.decode()
    )

    assert "AADSTS70021" in html
    assert "system:serviceaccount:payments:other" in html
    assert "The pod runs as another ServiceAccount." in html


def test_a_check_that_could_not_run_is_a_warning_not_a_failure(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    Verification.objects.create(
        identity_request=ready_request,
        federated_credential=ready_request.federated_credentials.get(),
        outcome=VerificationOutcome.INCONCLUSIVE,
        error_code="TokenEndpointUnreachable",
        summary="Could not reach Entra ID's token endpoint: verify again later.",
    )

    response = client_for(requester).get(reverse("request_detail", args=[ready_request.pk]))

    html = response.content.decode()
    assert '<div class="notice warn" data-testid="verification-result">' in html
    assert '<span class="badge verify-inconclusive">Could not check</span>' in html
    assert "verify again later" in html
    assert response.context["actions"].verify is True  # the team can try again


def test_the_yaml_downloads_as_a_bundle_or_one_manifest(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    client = client_for(requester)
    url = reverse("request_manifests", args=[ready_request.pk])

    bundle = client.get(url)
    deployment = client.get(url, {"kind": "deployment"})
    unknown = client.get(url, {"kind": "pod"})

    assert bundle["Content-Disposition"] == 'attachment; filename="payments-checkout.yaml"'
    documents = list(yaml.safe_load_all(bundle.content))
    assert [d["kind"] for d in documents] == ["ServiceAccount", "Deployment"]
    identity = ready_request.identity
    assert identity is not None
    annotations = documents[0]["metadata"]["annotations"]
    assert annotations["azure.workload.identity/client-id"] == identity.client_id
    assert f"/requests/{ready_request.pk}/" in bundle.content.decode()  # portal URL header
    assert [d["kind"] for d in yaml.safe_load_all(deployment.content)] == ["Deployment"]
    assert deployment["Content-Disposition"].endswith('payments-checkout-deployment.yaml"')
    assert unknown.status_code == 400


def test_manifests_of_a_request_not_ready_are_a_conflict(
    client_for: ClientFor, requester: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(requester).get(reverse("request_manifests", args=[pending_request.pk]))

    assert response.status_code == 409


def test_cancel_withdraws_a_pending_request(
    client_for: ClientFor, requester: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(requester).post(
        reverse("request_cancel", args=[pending_request.pk]), follow=True
    )

    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.CANCELLED
    assert f"Request #{pending_request.pk} cancelled." in response.content.decode()
    assert AuditEvent.objects.filter(action="identity_request.cancelled", actor=requester).exists()


def test_cancelling_twice_explains_the_conflict(
    client_for: ClientFor, requester: Any, pending_request: IdentityRequest
) -> None:
    client = client_for(requester)
    url = reverse("request_cancel", args=[pending_request.pk])
    client.post(url)

    response = client.post(url, follow=True)

    assert "is no longer pending (now cancelled)" in response.content.decode()


def test_retry_sends_a_failed_request_back_to_provisioning(
    client_for: ClientFor,
    requester: Any,
    failed_request: IdentityRequest,
    django_capture_on_commit_callbacks: Any,
) -> None:
    page = client_for(requester).get(reverse("request_detail", args=[failed_request.pk]))
    assert "AuthorizationFailed: the portal lacks rights" in page.content.decode()
    assert page.context["actions"].retry is True

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client_for(requester).post(reverse("request_retry", args=[failed_request.pk]))

    failed_request.refresh_from_db()
    assert failed_request.status == RequestStatus.PROVISIONING
    assert len(callbacks) == 1  # provisioning enqueued on commit


def test_verify_enqueues_a_check_and_the_page_follows_it(
    client_for: ClientFor,
    requester: Any,
    ready_request: IdentityRequest,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = client_for(requester)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("request_verify", args=[ready_request.pk]), follow=True)

    assert len(callbacks) == 1
    assert "Verification started" in response.content.decode()
    assert response.context["verifying"] is True
    assert response.context["poll_ms"] > 0
    assert AuditEvent.objects.filter(
        action="identity_request.verification_requested", actor=requester
    ).exists()


def test_verifying_a_pending_request_is_refused_with_the_reason(
    client_for: ClientFor, requester: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(requester).post(
        reverse("request_verify", args=[pending_request.pk]), follow=True
    )

    assert "only ready requests can be verified" in response.content.decode()


def test_an_unsafe_next_is_ignored(
    client_for: ClientFor, requester: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(requester).post(
        reverse("request_cancel", args=[pending_request.pk]),
        {"next": "https://evil.example/phish"},
    )

    assert response["Location"] == reverse("request_detail", args=[pending_request.pk])


def test_a_failed_new_request_offers_retry_not_cancel(
    client_for: Any, requester: Any, failed_request: Any
) -> None:
    page = client_for(requester).get(f"/requests/{failed_request.pk}/").content.decode()
    assert f"/requests/{failed_request.pk}/retry/" in page
    assert f"/requests/{failed_request.pk}/cancel/" not in page
