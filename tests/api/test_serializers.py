"""The request output written out by hand (IdentityRequestOutput.to_representation) says exactly
what DRF's generic walk over the declared fields says, for every kind and state of request: the
declarations are the schema, and the hand-written form must not drift from them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import serializers

from api.serializers import IdentityRequestOutput
from identities.models import IdentityRequest
from identities.policy import RoleDraft
from identities.selectors import identity_requests_visible_to
from identities.services import identity_request_change_create
from identities.services.revisions import identity_request_resubmit, identity_request_send_back
from tests.api.conftest import FileRequest, approve, make_failed, make_ready
from tests.support.people import STORAGE_SCOPE, VAULT_SCOPE

pytestmark = pytest.mark.django_db


def generic(instance: IdentityRequest) -> dict[str, Any]:
    """DRF's own walk over the declared fields (what the class did before its override)."""
    serializer = IdentityRequestOutput()
    return dict(serializers.Serializer.to_representation(serializer, instance))


def test_the_hand_written_output_is_the_generic_walks_for_every_kind_and_state(
    file_request: FileRequest, requester: Any, approver: Any
) -> None:
    pending = file_request(
        app_name="pending", service_account="pending", tags={"costCentre": "cc-1", "x": "y"}
    )
    ready = make_ready(approve(file_request(app_name="ready", service_account="ready"), approver))
    make_failed(approve(file_request(app_name="failed", service_account="failed"), approver))
    expiring = file_request(
        app_name="expiring",
        service_account="expiring",
        roles=(
            RoleDraft(
                "Key Vault Secrets User", VAULT_SCOPE, expires_at=timezone.now() + timedelta(days=9)
            ),
        ),
        identity_expires_at=timezone.now() + timedelta(days=20),
        tags={},
    )
    sent_back = file_request(app_name="sentback", service_account="sentback")
    identity_request_send_back(
        identity_request=sent_back, approver=approver, comment="Use the team's vault."
    )
    resubmitted = file_request(app_name="resubmitted", service_account="resubmitted")
    identity_request_send_back(
        identity_request=resubmitted, approver=approver, comment="Say why it needs it."
    )
    identity_request_resubmit(identity_request=resubmitted, actor=requester)
    assert ready.identity is not None
    change = identity_request_change_create(
        requester=requester,
        identity=ready.identity,
        add=(RoleDraft("Storage Blob Data Reader", STORAGE_SCOPE),),
        remove=(RoleDraft("Key Vault Secrets User", VAULT_SCOPE),),
        justification="Reads blobs now, not secrets.",
    )

    rows = list(identity_requests_visible_to(approver).order_by("id"))
    assert {row.pk for row in rows} >= {pending.pk, expiring.pk, sent_back.pk, change.pk}
    assert {row.status for row in rows} >= {"pending", "ready", "failed", "sent_back"}
    assert any(row.kind == "change_roles" for row in rows)
    for row in rows:
        fast = IdentityRequestOutput(row).data
        assert fast == generic(row), row
        assert list(fast) == list(IdentityRequestOutput().fields)  # the declared order
    by_app = {row.app_name: IdentityRequestOutput(row).data for row in rows if row.kind == "new"}
    assert by_app["expiring"]["identity_expires_at"] is not None
    assert by_app["expiring"]["roles"][0]["expires_at"] is not None
    assert by_app["sentback"]["status"] == "sent_back"
    assert by_app["resubmitted"]["revisions"] != []
    assert by_app["resubmitted"]["revision"] == 2
    assert by_app["ready"]["identity"]["client_id"] is not None
