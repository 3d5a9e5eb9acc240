"""After a decommission the portal withdraws the client-id annotation it applied to the
ServiceAccount (server-side apply on the sandbox cluster), and only what it applied."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from identities.audit.actions import AuditAction
from identities.manifests import CLIENT_ID_ANNOTATION
from identities.models import AuditEvent, Identity, IdentityRequest, RequestStatus
from identities.services import identity_request_approve, identity_request_decommission_create
from provisioning.kubernetes import KubernetesGateway
from provisioning.reconcile import reconcile_request
from provisioning.release import identity_release_service_accounts
from provisioning.tasks import provision_identity_request
from provisioning.verification import identity_request_verify
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def kube(sandbox: Sandbox) -> Iterator[KubernetesGateway]:
    with KubernetesGateway(sandbox.cluster_connection()) as gateway_:
        yield gateway_


@pytest.fixture
def verified(approved_request: ApprovedRequestFactory) -> IdentityRequest:
    """Provisioned and verified: verification applies the annotated ServiceAccount."""
    identity_request = approved_request()
    reconcile_request(identity_request.pk)
    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    verification = identity_request_verify(identity_request_id=identity_request.pk)
    assert verification is not None
    return identity_request


def _decommission(identity_request: IdentityRequest, requester: Any, approver: Any) -> int:
    identity = Identity.objects.get(pk=identity_request.identity_id)
    decommission = identity_request_decommission_create(
        requester=requester, identity=identity, justification="The app was retired."
    )
    identity_request_approve(identity_request=decommission, approver=approver)
    reconcile_request(decommission.pk)
    decommission.refresh_from_db()
    assert decommission.status == RequestStatus.READY, decommission.last_error
    return decommission.pk


def _annotations(kube: KubernetesGateway) -> dict[str, str]:
    live = kube.get_service_account(namespace="payments", name="checkout")
    assert live is not None
    return dict(live["metadata"].get("annotations") or {})


def test_the_portal_removes_the_annotation_it_applied_once_the_identity_is_gone(
    verified: IdentityRequest, kube: KubernetesGateway, requester: Any, approver: Any
) -> None:
    assert CLIENT_ID_ANNOTATION in _annotations(kube)
    identity = Identity.objects.get(pk=verified.identity_id)
    decommission = identity_request_decommission_create(
        requester=requester, identity=identity, justification="The app was retired."
    )
    identity_request_approve(identity_request=decommission, approver=approver)
    decommission_id = decommission.pk

    # The worker's task: the decommission, then the release (run here in-process).
    provision_identity_request(decommission_id)

    assert CLIENT_ID_ANNOTATION not in _annotations(kube)
    event = AuditEvent.objects.get(action=AuditAction.KUBE_SERVICE_ACCOUNT_RELEASED)
    assert event.identity_request_id == decommission_id
    assert event.data == {
        "namespace": "payments",
        "service_account": "checkout",
        "annotation_removed": True,
    }
    # A redelivered task applies the same empty configuration and writes no second row.
    assert identity_release_service_accounts(identity_request_id=decommission_id) == [
        ("payments", "checkout")
    ]
    assert AuditEvent.objects.filter(action=AuditAction.KUBE_SERVICE_ACCOUNT_RELEASED).count() == 1


def test_an_annotation_the_team_also_applied_is_left_and_recorded_as_kept(
    verified: IdentityRequest, kube: KubernetesGateway, requester: Any, approver: Any
) -> None:
    client_id = _annotations(kube)[CLIENT_ID_ANNOTATION]
    # The team applies the same annotation with its own kubectl: it co-owns the field.
    kube.core.patch_namespaced_service_account(
        "checkout",
        "payments",
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": "checkout",
                "namespace": "payments",
                "annotations": {CLIENT_ID_ANNOTATION: client_id},
            },
        },
        field_manager="kubectl",
        _content_type="application/apply-patch+yaml",
    )
    decommission_id = _decommission(verified, requester, approver)

    released = identity_release_service_accounts(identity_request_id=decommission_id)

    assert released == []
    assert _annotations(kube)[CLIENT_ID_ANNOTATION] == client_id
    event = AuditEvent.objects.get(action=AuditAction.KUBE_SERVICE_ACCOUNT_RELEASED)
    assert event.data["annotation_removed"] is False


def test_nothing_is_touched_on_a_cluster_where_the_team_applies_its_own_service_accounts(
    verified: IdentityRequest, kube: KubernetesGateway, requester: Any, approver: Any
) -> None:
    type(verified.cluster).objects.filter(pk=verified.cluster_id).update(
        apply_service_account=False
    )
    decommission_id = _decommission(verified, requester, approver)

    assert identity_release_service_accounts(identity_request_id=decommission_id) == []
    assert CLIENT_ID_ANNOTATION in _annotations(kube)
    assert not AuditEvent.objects.filter(action=AuditAction.KUBE_SERVICE_ACCOUNT_RELEASED).exists()
