"""Moving a request through its states the way the services and the worker would, for the UI
and browser tests that need a request in a given state without running a worker."""

from __future__ import annotations

import uuid
from typing import Any

from identities.models import (
    ChildStatus,
    FederatedCredential,
    Identity,
    IdentityRequest,
    RoleAssignment,
)
from identities.services import (
    identity_request_approve,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
)
from tests.support.people import TENANT


def approve(identity_request: IdentityRequest, approver: Any, capture: Any) -> IdentityRequest:
    """Approve without running the on-commit enqueue (no worker in these tests)."""
    with capture(execute=False):
        identity_request_approve(identity_request=identity_request, approver=approver)
    identity_request.refresh_from_db()
    return identity_request


def provisioned(identity_request: IdentityRequest) -> IdentityRequest:
    """Record what a worker would after a successful run (outputs, active children, ready)."""
    identity_request_mark_provisioning(identity_request=identity_request)
    assert identity_request.identity is not None
    Identity.objects.filter(pk=identity_request.identity.pk).update(
        client_id="8f2c7a51-0e0b-4f6e-9b7d-2d3c4b5a6f70",
        principal_id="ce2ce14e-85d7-4629-bdbc-454d0519d987",
        tenant_id=TENANT,
        resource_id=identity_request.identity.expected_resource_id,
    )
    FederatedCredential.objects.filter(identity_request=identity_request).update(
        status=ChildStatus.ACTIVE
    )
    for assignment in RoleAssignment.objects.filter(identity_request=identity_request):
        assignment.status = ChildStatus.ACTIVE
        assignment.name = str(uuid.uuid4())
        assignment.save()
    identity_request_mark_ready(identity_request=identity_request)
    identity_request.refresh_from_db()
    return identity_request
