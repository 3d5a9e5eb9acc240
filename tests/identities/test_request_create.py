"""identity_request_create: a valid draft becomes a pending request with its audit row."""

from __future__ import annotations

from typing import Any

import pytest

from identities.errors import DomainError, PermissionDeniedError, PolicyViolationError
from identities.models import AuditEvent, IdentityRequest
from identities.policy import RoleDraft
from identities.services import identity_request_create
from tests.identities.conftest import FileRequest, last_audit
from tests.support.people import STORAGE_SCOPE, VAULT_SCOPE, DraftFactory, IdentityFactory

pytestmark = pytest.mark.django_db


def test_a_valid_draft_becomes_a_pending_request_with_its_roles(file_request: FileRequest) -> None:
    identity_request = file_request(
        roles=(
            RoleDraft("Key Vault Secrets User", VAULT_SCOPE),
            RoleDraft("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", STORAGE_SCOPE),
        )
    )

    identity_request.refresh_from_db()
    assert identity_request.status == IdentityRequest.Status.PENDING
    assert identity_request.kind == IdentityRequest.Kind.NEW
    assert (identity_request.namespace, identity_request.service_account) == (
        "payments",
        "checkout",
    )
    assert [(r.role.name, r.scope) for r in identity_request.roles.order_by("id")] == [
        ("Key Vault Secrets User", VAULT_SCOPE),
        ("Storage Blob Data Reader", STORAGE_SCOPE),
    ]
    assert identity_request.tags == {"costCentre": "cc-4711", "environment": "dev"}
    assert identity_request.identity is None


def test_filing_writes_one_audit_row_by_the_requester(
    file_request: FileRequest, requester: Any
) -> None:
    identity_request = file_request()

    event = last_audit()
    assert AuditEvent.objects.count() == 1
    assert event.action == "identity_request.created"
    assert event.actor == requester
    assert event.actor_label == "alice"
    assert event.identity_request == identity_request
    assert event.data["request"]["service_account"] == "checkout"
    assert event.data["request"]["roles"] == [
        {"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}
    ]


def test_policy_violations_refuse_the_request_and_write_nothing(file_request: FileRequest) -> None:
    with pytest.raises(PolicyViolationError) as caught:
        file_request(namespace="search", service_account="Bad_Name")

    fields = {(v.field, v.rule) for v in caught.value.violations}
    assert ("namespace", "namespace_not_owned") in fields
    assert ("service_account", "dns1123_subdomain") in fields
    assert "namespace" in caught.value.message
    assert not IdentityRequest.objects.exists()
    assert not AuditEvent.objects.exists()


def test_warnings_are_recorded_on_the_audit_row(file_request: FileRequest) -> None:
    file_request(service_account="default", app_name="checkout")

    warnings = last_audit().data["warnings"]
    assert any(
        (w["field"], w["rule"]) == ("service_account", "default_service_account") for w in warnings
    )


def test_someone_outside_the_team_cannot_file_for_it(
    file_request: FileRequest, outsider: Any
) -> None:
    with pytest.raises(PermissionDeniedError, match="not a member of team 'payments'"):
        file_request(as_user=outsider)
    assert not AuditEvent.objects.exists()


def test_a_team_member_without_the_requester_role_cannot_file(
    file_request: FileRequest, approver: Any, team: Any
) -> None:
    team.memberships.create(user=approver)
    with pytest.raises(PermissionDeniedError, match="Only requesters"):
        file_request(as_user=approver)


def test_decommission_drafts_are_sent_to_their_own_service(
    requester: Any, make_draft: DraftFactory
) -> None:
    with pytest.raises(DomainError, match="identity_request_decommission_create"):
        identity_request_create(requester=requester, draft=make_draft(kind="decommission"))


def test_adding_a_service_account_to_a_team_identity_shares_its_app(
    file_request: FileRequest, team: Any, cluster: Any
) -> None:
    identity = IdentityFactory(team=team, cluster=cluster, app_name="checkout")

    identity_request = file_request(
        kind="add_service_account",
        identity_id=identity.pk,
        app_name="",
        service_account="checkout-worker",
        namespace="payments-jobs",
        roles=(),
        tags={},
    )

    assert identity_request.kind == IdentityRequest.Kind.ADD_SERVICE_ACCOUNT
    assert identity_request.identity == identity
    assert identity_request.app_name == "checkout"
    event = last_audit()
    assert (event.action, event.identity) == ("identity_request.created", identity)


def test_adding_a_service_account_to_another_teams_identity_is_refused(
    file_request: FileRequest, other_team: Any, cluster: Any
) -> None:
    identity = IdentityFactory(team=other_team, cluster=cluster)

    with pytest.raises(PolicyViolationError) as caught:
        file_request(kind="add_service_account", identity_id=identity.pk, roles=(), tags={})
    assert ("identity", "identity_other_team") in {
        (v.field, v.rule) for v in caught.value.violations
    }
    # Nothing about the other team's identity leaks through the messages.
    messages = " ".join(v.message for v in caught.value.violations)
    assert identity.name not in messages
    assert other_team.name not in messages
