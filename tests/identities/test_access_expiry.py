"""Time-bound access through the services: the policy's end-date bounds, end dates carried from
the approved request to the live assignments, the expiry sweep (roles, whole identities) and the
reminders before an end, each with its audit rows and idempotent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from identities.audit.actions import AuditAction
from identities.errors import PolicyViolationError
from identities.models import (
    AuditEvent,
    CatalogRole,
    ChildStatus,
    Identity,
    IdentityRequest,
    Notification,
    NotificationChannel,
    NotificationEvent,
    RequestKind,
    RequestStatus,
    RoleAssignment,
    Team,
)
from identities.policy import RoleDraft
from identities.services import (
    access_expiry_remind,
    identities_expire,
    identity_request_approve,
    role_assignments_expire,
)
from identities.work import Work
from tests.identities.conftest import FileRequest, audit_actions
from tests.support.people import STORAGE_SCOPE, VAULT_SCOPE, IdentityFactory

pytestmark = pytest.mark.django_db

EXCEPTION_WHY = "Checkout needs to manage its vault for the migration week, then loses it."


@pytest.fixture
def bounded(settings: Any) -> Any:
    settings.ACCESS_MAX_DAYS_PRIVILEGED = 30
    settings.ACCESS_MAX_DAYS = 0
    settings.ACCESS_EXPIRY_REMIND_DAYS = 7
    return settings


def _refusal(excinfo: pytest.ExceptionInfo[PolicyViolationError]) -> list[tuple[str, str]]:
    return [(v.field, v.rule) for v in excinfo.value.result.violations]


def test_a_privileged_role_without_an_end_date_is_refused_naming_the_field(
    bounded: Any, file_request: FileRequest
) -> None:
    with pytest.raises(PolicyViolationError) as excinfo:
        file_request(
            roles=(RoleDraft("Contributor", VAULT_SCOPE),),
            is_exception=True,
            justification=EXCEPTION_WHY,
        )
    assert ("roles[0].expires_at", "expiry_required") in _refusal(excinfo)
    message = excinfo.value.result.for_field("roles[0].expires_at")[0].message
    assert "at most 30 days" in message


def test_an_end_date_beyond_the_maximum_is_refused(bounded: Any, file_request: FileRequest) -> None:
    too_far = timezone.now() + timedelta(days=31)
    with pytest.raises(PolicyViolationError) as excinfo:
        file_request(
            roles=(RoleDraft("Contributor", VAULT_SCOPE, expires_at=too_far),),
            is_exception=True,
            justification=EXCEPTION_WHY,
        )
    assert _refusal(excinfo) == [("roles[0].expires_at", "expiry_beyond_maximum")]
    bounded.ACCESS_MAX_DAYS = 365  # now every role needs an end date, within a year
    with pytest.raises(PolicyViolationError) as excinfo:
        file_request(roles=(RoleDraft("Key Vault Secrets User", VAULT_SCOPE),))
    assert _refusal(excinfo) == [("roles[0].expires_at", "expiry_required")]
    with pytest.raises(PolicyViolationError) as excinfo:
        file_request(
            roles=(
                RoleDraft(
                    "Key Vault Secrets User",
                    VAULT_SCOPE,
                    expires_at=timezone.now() + timedelta(days=366),
                ),
            ),
        )
    assert _refusal(excinfo) == [("roles[0].expires_at", "expiry_beyond_maximum")]


def test_an_end_date_in_the_past_is_refused_for_roles_and_the_identity(
    bounded: Any, file_request: FileRequest
) -> None:
    yesterday = timezone.now() - timedelta(days=1)
    with pytest.raises(PolicyViolationError) as excinfo:
        file_request(
            roles=(RoleDraft("Key Vault Secrets User", VAULT_SCOPE, expires_at=yesterday),),
            identity_expires_at=yesterday,
        )
    assert _refusal(excinfo) == [
        ("roles[0].expires_at", "expiry_in_past"),
        ("identity_expires_at", "expiry_in_past"),
    ]


def test_without_a_maximum_a_role_may_be_open_ended(
    settings: Any, file_request: FileRequest
) -> None:
    settings.ACCESS_MAX_DAYS = 0
    settings.ACCESS_MAX_DAYS_PRIVILEGED = 0
    identity_request = file_request(
        roles=(RoleDraft("Contributor", VAULT_SCOPE),),
        is_exception=True,
        justification=EXCEPTION_WHY,
    )
    assert identity_request.roles.get().expires_at is None


def test_the_approved_end_dates_become_the_live_ones(
    bounded: Any, file_request: FileRequest, approver: Any, django_capture_on_commit_callbacks: Any
) -> None:
    role_end = timezone.now() + timedelta(days=10)
    identity_end = timezone.now() + timedelta(days=20)
    identity_request = file_request(
        roles=(
            RoleDraft("Key Vault Secrets User", VAULT_SCOPE, expires_at=role_end),
            RoleDraft("Storage Blob Data Reader", STORAGE_SCOPE),
        ),
        identity_expires_at=identity_end,
    )
    filed = AuditEvent.objects.get(
        identity_request=identity_request, action=AuditAction.REQUEST_CREATED
    )
    assert filed.data["request"]["roles"][0]["expires_at"] == role_end.isoformat()
    assert filed.data["request"]["identity_expires_at"] == identity_end.isoformat()
    with django_capture_on_commit_callbacks(execute=False):
        identity_request_approve(identity_request=identity_request, approver=approver)
    identity_request.refresh_from_db()
    identity = identity_request.identity
    assert identity is not None
    assert identity.expires_at == identity_end
    ends = dict(identity.role_assignments.values_list("role__name", "expires_at"))
    assert ends == {"Key Vault Secrets User": role_end, "Storage Blob Data Reader": None}


def _assignment(identity: Identity, role: CatalogRole, scope: str, **fields: Any) -> RoleAssignment:
    return RoleAssignment.objects.create(
        identity=identity, role=role, scope=scope, status=ChildStatus.ACTIVE, name="n", **fields
    )


def test_the_sweep_marks_expired_assignments_for_removal_once_with_an_audit_row_each(
    team: Team,
    cluster: Any,
    catalog: dict[str, CatalogRole],
    work_sent: list[tuple[Work, tuple[object, ...]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    now = timezone.now()
    identity = IdentityFactory(team=team, cluster=cluster)
    expired = _assignment(
        identity, catalog["Key Vault Secrets User"], VAULT_SCOPE, expires_at=now - timedelta(1)
    )
    later = _assignment(
        identity,
        catalog["Storage Blob Data Reader"],
        STORAGE_SCOPE,
        expires_at=now + timedelta(days=3),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert role_assignments_expire(now=now) == [identity.pk]
    assert work_sent == [(Work.REVOKE_ROLES, (identity.pk,))]
    expired.refresh_from_db()
    later.refresh_from_db()
    assert expired.status == ChildStatus.REMOVING
    assert later.status == ChildStatus.ACTIVE
    row = AuditEvent.objects.get(action=AuditAction.IDENTITY_ROLE_EXPIRED)
    assert row.actor is None
    assert row.identity_id == identity.pk
    assert row.data["role"] == "Key Vault Secrets User"
    assert row.data["scope"] == VAULT_SCOPE
    # Idempotent: a second sweep finds nothing new and writes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert role_assignments_expire(now=now) == []
    assert audit_actions(action=AuditAction.IDENTITY_ROLE_EXPIRED) == [
        AuditAction.IDENTITY_ROLE_EXPIRED
    ]


def test_identities_on_their_way_out_are_left_to_their_decommission(
    team: Team, cluster: Any, catalog: dict[str, CatalogRole]
) -> None:
    identity = IdentityFactory(team=team, cluster=cluster, status=Identity.Status.DECOMMISSIONING)
    _assignment(
        identity,
        catalog["Key Vault Secrets User"],
        VAULT_SCOPE,
        expires_at=timezone.now() - timedelta(1),
    )
    assert role_assignments_expire() == []


def test_the_owning_team_is_reminded_once_per_end_date(
    bounded: Any,
    team: Team,
    cluster: Any,
    catalog: dict[str, CatalogRole],
    requester: Any,
    outsider: Any,
) -> None:
    now = timezone.now()
    identity = IdentityFactory(team=team, cluster=cluster)
    soon = _assignment(
        identity, catalog["Key Vault Secrets User"], VAULT_SCOPE, expires_at=now + timedelta(3)
    )
    _assignment(
        identity, catalog["Storage Blob Data Reader"], STORAGE_SCOPE, expires_at=now + timedelta(9)
    )
    assert access_expiry_remind(now=now) == [identity.pk]
    row = AuditEvent.objects.get(action=AuditAction.IDENTITY_ACCESS_EXPIRING)
    assert [r["role"] for r in row.data["roles"]] == ["Key Vault Secrets User"]
    inbox = Notification.objects.filter(
        event=NotificationEvent.ACCESS_EXPIRING, channel=NotificationChannel.INBOX
    )
    assert requester.pk in set(inbox.values_list("recipient", flat=True))
    assert outsider.pk not in set(inbox.values_list("recipient", flat=True))
    count = inbox.count()
    assert access_expiry_remind(now=now + timedelta(hours=1)) == []  # once
    assert inbox.count() == count
    # A renewal (a new end date) earns a new reminder when it comes near.
    RoleAssignment.objects.filter(pk=soon.pk).update(expires_at=now + timedelta(days=40))
    assert access_expiry_remind(now=now + timedelta(days=35)) == [identity.pk]
    assert inbox.count() > count


def test_an_identity_past_its_end_is_decommissioned_by_a_request_approved_by_policy(
    bounded: Any,
    file_request: FileRequest,
    approver: Any,
    requester: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    end = timezone.now() + timedelta(days=2)
    identity_request = file_request(identity_expires_at=end)
    with django_capture_on_commit_callbacks(execute=False):
        identity_request_approve(identity_request=identity_request, approver=approver)
    identity_request.refresh_from_db()
    identity = identity_request.identity
    assert identity is not None
    Identity.objects.filter(pk=identity.pk).update(status=Identity.Status.READY)
    IdentityRequest.objects.filter(pk=identity_request.pk).update(status=RequestStatus.READY)
    assert identities_expire(now=end - timedelta(minutes=1)) == []
    with django_capture_on_commit_callbacks(execute=True):
        filed = identities_expire(now=end + timedelta(minutes=1))
    assert len(filed) == 1
    decommission = IdentityRequest.objects.get(pk=filed[0])
    assert decommission.kind == RequestKind.DECOMMISSION
    assert decommission.status == RequestStatus.APPROVED
    assert decommission.requester_id == requester.pk
    assert (Work.PROVISION, (decommission.pk,)) in work_sent
    identity.refresh_from_db()
    assert identity.status == Identity.Status.DECOMMISSIONING
    assert set(identity.role_assignments.values_list("status", flat=True)) == {ChildStatus.REMOVING}
    rows = AuditEvent.objects.filter(identity_request=decommission).order_by("id")
    actions = [row.action for row in rows]
    assert actions[:2] == [AuditAction.IDENTITY_EXPIRED, AuditAction.REQUEST_CREATED]
    assert AuditAction.REQUEST_APPROVED in actions
    approved = rows.get(action=AuditAction.REQUEST_APPROVED)
    assert approved.actor is None
    assert approved.data["approved_by_policy"] == "expiry"
    # Idempotent: the identity is decommissioning now; a second sweep files nothing.
    assert identities_expire(now=end + timedelta(minutes=2)) == []
