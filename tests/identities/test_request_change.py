"""identity_request_change_create and the approval of a change (kind=change_roles): the diff, the
policy on the identity after the change, one open change per identity, and the audit rows."""

from __future__ import annotations

from typing import Any

import pytest

from identities.errors import PermissionDeniedError, PolicyViolationError
from identities.models import (
    ChildStatus,
    Identity,
    IdentityRequest,
    RequestKind,
    RequestStatus,
    RoleChange,
)
from identities.policy import RoleDraft, risk_summary
from identities.selectors import identity_request_draft, identity_request_policy, role_change_diff
from identities.services import (
    identity_request_approve,
    identity_request_cancel,
    identity_request_change_create,
    identity_request_decommission_create,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
)
from identities.work import Work
from tests.identities.conftest import audit_actions, last_audit
from tests.support.people import SEARCH_VAULT_SCOPE, STORAGE_SCOPE, SUBSCRIPTION, VAULT_SCOPE

pytestmark = pytest.mark.django_db

SECRETS_USER = "Key Vault Secrets User"
BLOB_READER = "Storage Blob Data Reader"
OTHER_VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments-2"
)


@pytest.fixture
def ready_identity(approved_request: IdentityRequest) -> Identity:
    """Ready, with its one role (Key Vault Secrets User on VAULT_SCOPE) active in Azure."""
    identity_request_mark_provisioning(identity_request=approved_request)
    identity_request_mark_ready(identity_request=approved_request)
    identity = approved_request.identity
    assert identity is not None
    identity.role_assignments.update(
        status=ChildStatus.ACTIVE, name="0b7e4b5f-3c3b-4f71-a2a6-5a1c1e9f1b11"
    )
    return identity


def file_change(identity: Identity, user: Any, **kwargs: Any) -> IdentityRequest:
    values: dict[str, Any] = {
        "add": (),
        "remove": (),
        "justification": "Checkout also reads the product images.",
    }
    values.update(kwargs)
    return identity_request_change_create(requester=user, identity=identity, **values)


def violations(error: pytest.ExceptionInfo[PolicyViolationError]) -> list[tuple[str, str]]:
    return [(v.field, v.rule) for v in error.value.result.violations]


def test_a_change_records_its_whole_diff_and_is_audited(
    ready_identity: Identity, requester: Any
) -> None:
    change = file_change(
        ready_identity,
        requester,
        add=(RoleDraft(BLOB_READER, STORAGE_SCOPE),),
    )

    assert (change.kind, change.status, change.identity) == (
        RequestKind.CHANGE_ROLES,
        RequestStatus.PENDING,
        ready_identity,
    )
    diff = role_change_diff(change)
    assert [(r["role"], r["scope"]) for r in diff["added"]] == [(BLOB_READER, STORAGE_SCOPE)]
    assert diff["removed"] == []
    assert [(r["role"], r["scope"]) for r in diff["unchanged"]] == [(SECRETS_USER, VAULT_SCOPE)]
    event = last_audit()
    assert (event.action, event.actor, event.identity, event.identity_request) == (
        "identity_request.created",
        requester,
        ready_identity,
        change,
    )
    assert event.data["kind"] == "change_roles"
    assert event.data["request"]["diff"] == diff


def test_a_second_open_change_is_refused_naming_the_first(
    ready_identity: Identity, requester: Any, teammate: Any
) -> None:
    first = file_change(ready_identity, requester, add=(RoleDraft(BLOB_READER, STORAGE_SCOPE),))

    with pytest.raises(PolicyViolationError) as error:
        file_change(ready_identity, teammate, remove=(RoleDraft(SECRETS_USER, VAULT_SCOPE),))

    assert violations(error) == [("identity", "change_in_progress")]
    assert f"#{first.pk}" in error.value.result.violations[0].message
    identity_request_cancel(identity_request=first, actor=requester)
    file_change(ready_identity, teammate, remove=(RoleDraft(SECRETS_USER, VAULT_SCOPE),))


def test_removing_a_role_the_identity_does_not_have_is_refused_naming_it(
    ready_identity: Identity, requester: Any
) -> None:
    with pytest.raises(PolicyViolationError) as error:
        file_change(ready_identity, requester, remove=(RoleDraft(SECRETS_USER, OTHER_VAULT),))

    assert violations(error) == [("remove[0]", "role_not_assigned")]
    message = error.value.result.violations[0].message
    assert SECRETS_USER in message
    assert OTHER_VAULT in message


def test_adding_a_role_the_identity_already_has_is_refused(
    ready_identity: Identity, requester: Any
) -> None:
    with pytest.raises(PolicyViolationError) as error:
        file_change(ready_identity, requester, add=(RoleDraft(SECRETS_USER, VAULT_SCOPE.upper()),))

    assert ("roles[0]", "role_already_assigned") in violations(error)


def test_a_change_that_changes_nothing_is_refused(ready_identity: Identity, requester: Any) -> None:
    with pytest.raises(PolicyViolationError) as error:
        file_change(ready_identity, requester)

    assert violations(error) == [("roles", "no_change")]


def test_a_change_leaving_no_role_is_allowed_with_a_warning(
    ready_identity: Identity, requester: Any, approver: Any
) -> None:
    change = file_change(ready_identity, requester, remove=(RoleDraft(SECRETS_USER, VAULT_SCOPE),))

    result = identity_request_policy(change)
    assert [(w.field, w.rule) for w in result.warnings] == [("remove", "no_roles_left")]
    assert risk_summary(identity_request_draft(change), result).level == "low"


def test_a_pure_removal_needs_one_approver_and_marks_the_assignment_for_removal(
    ready_identity: Identity,
    requester: Any,
    approver: Any,
    django_capture_on_commit_callbacks: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    change = file_change(ready_identity, requester, remove=(RoleDraft(SECRETS_USER, VAULT_SCOPE),))

    with django_capture_on_commit_callbacks(execute=True):
        identity_request_approve(identity_request=change, approver=approver)

    assert change.status == RequestStatus.APPROVED
    # Counted by what was sent, not by on-commit callbacks (the outbox adds its own).
    assert [work for work, _ in work_sent].count(Work.PROVISION) == 1
    assert list(ready_identity.role_assignments.values_list("status", flat=True)) == [
        ChildStatus.REMOVING
    ]
    ready_identity.refresh_from_db()
    assert ready_identity.status == Identity.Status.READY  # the identity stays live
    assert audit_actions(identity_request=change)[-2:] == [
        "identity.roles_changing",
        "identity_request.approved",
    ]


def test_an_added_role_is_a_pending_assignment_once_approved_and_ready_records_the_change(
    ready_identity: Identity, requester: Any, approver: Any, django_capture_on_commit_callbacks: Any
) -> None:
    change = file_change(ready_identity, requester, add=(RoleDraft(BLOB_READER, STORAGE_SCOPE),))
    with django_capture_on_commit_callbacks(execute=False):
        identity_request_approve(identity_request=change, approver=approver)

    added = ready_identity.role_assignments.get(scope=STORAGE_SCOPE)
    assert (added.status, added.identity_request) == (ChildStatus.PENDING, change)
    assert ready_identity.role_assignments.get(scope=VAULT_SCOPE).status == ChildStatus.ACTIVE

    identity_request_mark_provisioning(identity_request=change)
    identity_request_mark_ready(identity_request=change)
    event = last_audit()
    assert (event.action, event.identity_request, event.identity) == (
        "identity.roles_changed",
        change,
        ready_identity,
    )
    assert [r["scope"] for r in event.data["added"]] == [STORAGE_SCOPE]


def test_a_privileged_role_added_needs_an_exception_and_two_approvers(
    ready_identity: Identity,
    requester: Any,
    approver: Any,
    second_approver: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    contributor = RoleDraft("Contributor", STORAGE_SCOPE)
    with pytest.raises(PolicyViolationError) as error:
        file_change(ready_identity, requester, add=(contributor,))
    assert ("roles[0].role", "privileged_role") in violations(error)

    change = file_change(
        ready_identity,
        requester,
        add=(contributor,),
        is_exception=True,
        justification="Checkout must rotate the storage account keys itself.",
    )
    assert change.approvals_required == 2
    identity_request_approve(identity_request=change, approver=approver)
    assert change.status == RequestStatus.PENDING
    assert audit_actions(identity_request=change)[-1] == "identity_request.approval_recorded"
    with django_capture_on_commit_callbacks(execute=False):
        identity_request_approve(identity_request=change, approver=second_approver)
    assert change.status == RequestStatus.APPROVED


def test_keeping_a_privileged_role_while_adding_another_is_an_exception(
    ready_identity: Identity, requester: Any, catalog: dict[str, Any]
) -> None:
    """Judged after the change: the identity keeps its privileged role and gains one more."""
    ready_identity.role_assignments.update(role=catalog["Contributor"], scope=STORAGE_SCOPE)

    with pytest.raises(PolicyViolationError) as error:
        file_change(ready_identity, requester, add=(RoleDraft(SECRETS_USER, VAULT_SCOPE),))
    assert violations(error) == [("is_exception", "privileged_after_change")]

    # Removing the privileged role needs no exception: it only takes access away.
    change = file_change(
        ready_identity, requester, remove=(RoleDraft("Contributor", STORAGE_SCOPE),)
    )
    assert change.approvals_required == 1


def test_a_scope_of_another_team_needs_that_teams_approval(
    ready_identity: Identity, requester: Any, approver: Any, outsider: Any
) -> None:
    change = file_change(
        ready_identity, requester, add=(RoleDraft(SECRETS_USER, SEARCH_VAULT_SCOPE),)
    )
    assert [team.name for team in change.owner_teams.all()] == ["search"]

    identity_request_approve(identity_request=change, approver=approver)
    assert change.status == RequestStatus.PENDING  # search has not approved yet


def test_a_protected_scope_is_refused(ready_identity: Identity, requester: Any) -> None:
    protected = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-identities"
        "/providers/Microsoft.KeyVault/vaults/kv-portal"
    )
    with pytest.raises(PolicyViolationError) as error:
        file_change(ready_identity, requester, add=(RoleDraft(SECRETS_USER, protected),))
    assert violations(error) == [("roles[0].scope", "protected_scope")]


def test_another_team_cannot_change_the_identity(ready_identity: Identity, outsider: Any) -> None:
    with pytest.raises(PermissionDeniedError):
        file_change(ready_identity, outsider, add=(RoleDraft(BLOB_READER, STORAGE_SCOPE),))
    assert not IdentityRequest.objects.filter(kind=RequestKind.CHANGE_ROLES).exists()


def test_only_a_ready_identity_can_be_changed(ready_identity: Identity, requester: Any) -> None:
    Identity.objects.filter(pk=ready_identity.pk).update(status=Identity.Status.FAILED)
    with pytest.raises(PolicyViolationError) as error:
        file_change(ready_identity, requester, add=(RoleDraft(BLOB_READER, STORAGE_SCOPE),))
    assert violations(error) == [("identity", "identity_not_ready")]


def test_the_rows_say_what_each_role_does(ready_identity: Identity, requester: Any) -> None:
    change = file_change(
        ready_identity,
        requester,
        add=(RoleDraft(SECRETS_USER, OTHER_VAULT),),
        remove=(RoleDraft(SECRETS_USER, VAULT_SCOPE),),
    )
    assert sorted(change.roles.values_list("change", "scope")) == sorted(
        [(RoleChange.ADD, OTHER_VAULT), (RoleChange.REMOVE, VAULT_SCOPE)]
    )


def test_an_identity_with_a_change_under_way_cannot_be_decommissioned_meanwhile(
    ready_identity: Identity, requester: Any
) -> None:
    change = file_change(ready_identity, requester, add=(RoleDraft(BLOB_READER, STORAGE_SCOPE),))

    with pytest.raises(PolicyViolationError) as error:
        identity_request_decommission_create(
            requester=requester, identity=ready_identity, justification="App retired."
        )
    assert violations(error) == [("identity", "change_in_progress")]
    assert f"#{change.pk}" in error.value.result.violations[0].message

    identity_request_cancel(identity_request=change, actor=requester)
    identity_request_decommission_create(
        requester=requester, identity=ready_identity, justification="App retired."
    )
