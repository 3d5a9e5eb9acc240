"""identity_request_approve: separation of duties, four eyes for exceptions, policy re-checked,
desired state committed and provisioning enqueued on commit."""

from __future__ import annotations

from typing import Any

import pytest

from identities.errors import ConflictError, PermissionDeniedError, PolicyViolationError
from identities.models import (
    Approval,
    AuditEvent,
    FederatedCredential,
    Identity,
    IdentityRequest,
    NamespaceOwnership,
    RoleAssignment,
)
from identities.naming import AUDIENCE
from identities.policy import RoleDraft
from identities.services import identity_request_approve, identity_request_create
from identities.work import Work
from tests.identities.conftest import FileRequest, audit_actions, last_audit
from tests.support.people import RESOURCE_GROUP_SCOPE, VAULT_SCOPE, DraftFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_approval_moves_the_request_to_approved_and_audits_it(
    pending_request: IdentityRequest,
    approver: Any,
    django_capture_on_commit_callbacks: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        identity_request_approve(
            identity_request=pending_request, approver=approver, comment="Scoped to one vault."
        )

    pending_request.refresh_from_db()
    assert pending_request.status == IdentityRequest.Status.APPROVED
    event = last_audit()
    assert event.action == "identity_request.approved"
    assert event.actor == approver
    assert event.identity_request == pending_request
    assert event.identity == pending_request.identity
    assert event.data["from"] == "pending"
    assert event.data["approvers"] == ["sam"]
    assert event.data["comment"] == "Scoped to one vault."
    assert [work for work, _ in work_sent].count(Work.PROVISION) == 1, (
        "provisioning is enqueued once, after commit"
    )


def test_on_commit_the_provisioning_message_goes_out_before_the_notices(
    pending_request: IdentityRequest,
    approver: Any,
    django_capture_on_commit_callbacks: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    # A worker may start on the identity while the approval's emails and webhooks are still
    # being handed to the broker: provisioning is the approval's point, the notices can wait.
    with django_capture_on_commit_callbacks(execute=True):
        identity_request_approve(identity_request=pending_request, approver=approver)

    sent = [work for work, _ in work_sent]
    assert Work.DELIVER_NOTIFICATIONS in sent, sent  # the requester is told by email
    assert sent.index(Work.PROVISION) < sent.index(Work.DELIVER_NOTIFICATIONS), sent


def test_approval_commits_the_desired_identity_credential_and_role_assignments(
    approved_request: IdentityRequest, cluster: Any
) -> None:
    identity = approved_request.identity
    assert identity is not None
    assert identity.status == Identity.Status.PROVISIONING
    assert identity.name == "aks-test-payments-checkout"
    assert (identity.subscription_id, identity.resource_group, identity.location) == (
        cluster.subscription_id,
        cluster.resource_group,
        cluster.location,
    )
    fic = FederatedCredential.objects.get(identity=identity)
    assert fic.issuer == cluster.oidc_issuer_url
    assert fic.issuer.endswith("/"), "the issuer is kept exactly, trailing slash included"
    assert fic.subject == "system:serviceaccount:payments:checkout"
    assert fic.audience == AUDIENCE
    assert fic.status == FederatedCredential.Status.PENDING
    assignment = RoleAssignment.objects.get(identity=identity)
    assert (assignment.role.name, assignment.scope, assignment.name) == (
        "Key Vault Secrets User",
        VAULT_SCOPE,
        "",
    )
    assert identity.tags["approvers"] == "sam"
    assert identity.tags["managed-by"] == "workload-identity-portal"
    assert audit_actions(identity=identity) == ["identity.created", "identity_request.approved"]


def test_requesters_cannot_approve_their_own_requests(
    requester: Any, team: Any, make_draft: DraftFactory
) -> None:
    self_approver = UserFactory(username="selfish", in_groups=["requesters", "approvers"])
    team.memberships.create(user=self_approver)
    identity_request = identity_request_create(requester=self_approver, draft=make_draft())

    with pytest.raises(PermissionDeniedError, match="own requests"):
        identity_request_approve(identity_request=identity_request, approver=self_approver)

    identity_request.refresh_from_db()
    assert identity_request.status == IdentityRequest.Status.PENDING
    assert audit_actions() == ["identity_request.created"]


def test_only_approvers_can_approve(pending_request: IdentityRequest, teammate: Any) -> None:
    with pytest.raises(PermissionDeniedError, match="Only approvers"):
        identity_request_approve(identity_request=pending_request, approver=teammate)
    assert not Approval.objects.exists()


def test_approving_an_already_approved_request_is_a_conflict(
    approved_request: IdentityRequest, second_approver: Any
) -> None:
    rows_before = AuditEvent.objects.count()
    with pytest.raises(
        ConflictError, match=rf"request {approved_request.pk} is no longer pending \(now approved\)"
    ):
        identity_request_approve(identity_request=approved_request, approver=second_approver)
    assert AuditEvent.objects.count() == rows_before


def _exception_draft(make_draft: DraftFactory) -> Any:
    return make_draft(
        roles=(RoleDraft("Contributor", RESOURCE_GROUP_SCOPE),),
        is_exception=True,
        justification="Migration job must recreate resources in its resource group nightly.",
    )


def test_an_exception_needs_two_different_approvers(
    requester: Any,
    approver: Any,
    second_approver: Any,
    make_draft: DraftFactory,
    django_capture_on_commit_callbacks: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    identity_request = identity_request_create(
        requester=requester, draft=_exception_draft(make_draft)
    )

    with django_capture_on_commit_callbacks(execute=False) as first_callbacks:
        identity_request_approve(identity_request=identity_request, approver=approver)
    identity_request.refresh_from_db()
    assert identity_request.status == IdentityRequest.Status.PENDING
    assert last_audit().action == "identity_request.approval_recorded"
    assert last_audit().data["approvers"] == ["sam"]
    assert first_callbacks == []

    with pytest.raises(ConflictError, match="already decided"):
        identity_request_approve(identity_request=identity_request, approver=approver)

    with django_capture_on_commit_callbacks(execute=True):
        identity_request_approve(identity_request=identity_request, approver=second_approver)
    identity_request.refresh_from_db()
    assert identity_request.status == IdentityRequest.Status.APPROVED
    event = last_audit()
    assert (event.action, event.actor) == ("identity_request.approved", second_approver)
    assert event.data["approvers"] == ["sam", "sara"]
    assert [work for work, _ in work_sent].count(Work.PROVISION) == 1
    assert identity_request.identity is not None
    assert identity_request.identity.tags["approvers"] == "sam,sara"


def test_approval_re_runs_the_policy_because_the_world_may_have_changed(
    pending_request: IdentityRequest, approver: Any
) -> None:
    NamespaceOwnership.objects.filter(namespace="payments").delete()

    with pytest.raises(PolicyViolationError) as caught:
        identity_request_approve(identity_request=pending_request, approver=approver)

    assert ("namespace", "namespace_not_owned") in {
        (v.field, v.rule) for v in caught.value.violations
    }
    pending_request.refresh_from_db()
    assert pending_request.status == IdentityRequest.Status.PENDING
    assert not Approval.objects.exists()
    assert audit_actions() == ["identity_request.created"]


def test_a_second_request_for_an_already_approved_service_account_cannot_be_approved(
    file_request: FileRequest, approver: Any, django_capture_on_commit_callbacks: Any
) -> None:
    first = file_request()
    second = file_request(app_name="checkout-v2")
    with django_capture_on_commit_callbacks(execute=False):
        identity_request_approve(identity_request=first, approver=approver)

    with pytest.raises(PolicyViolationError) as caught:
        identity_request_approve(identity_request=second, approver=approver)
    assert ("service_account", "already_federated") in {
        (v.field, v.rule) for v in caught.value.violations
    }


def test_approving_an_added_service_account_adds_a_pending_credential_to_the_identity(
    file_request: FileRequest,
    team: Any,
    cluster: Any,
    approver: Any,
    django_capture_on_commit_callbacks: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    from tests.support.people import FederatedCredentialFactory, IdentityFactory

    identity = IdentityFactory(team=team, cluster=cluster, app_name="checkout")
    FederatedCredentialFactory(identity=identity, service_account="checkout")
    identity_request = file_request(
        kind="add_service_account",
        identity_id=identity.pk,
        namespace="payments-jobs",
        service_account="checkout-nightly",
        roles=(),
        tags={},
    )

    with django_capture_on_commit_callbacks(execute=True):
        identity_request_approve(identity_request=identity_request, approver=approver)

    assert [work for work, _ in work_sent].count(Work.PROVISION) == 1
    added = FederatedCredential.objects.get(identity_request=identity_request)
    assert (added.identity, added.status, added.subject) == (
        identity,
        FederatedCredential.Status.PENDING,
        "system:serviceaccount:payments-jobs:checkout-nightly",
    )
    identity.refresh_from_db()
    assert identity.status == Identity.Status.READY, "existing pods keep working meanwhile"
    assert last_audit().identity == identity


def test_the_twenty_first_credential_is_refused_at_approval(
    file_request: FileRequest, team: Any, cluster: Any, approver: Any
) -> None:
    from tests.support.people import FederatedCredentialFactory, IdentityFactory

    identity = IdentityFactory(team=team, cluster=cluster, app_name="checkout")
    FederatedCredentialFactory.create_batch(19, identity=identity)
    identity_request = file_request(
        kind="add_service_account", identity_id=identity.pk, roles=(), tags={}
    )
    FederatedCredentialFactory(identity=identity)  # the 20th arrives meanwhile

    with pytest.raises(PolicyViolationError) as caught:
        identity_request_approve(identity_request=identity_request, approver=approver)
    assert ("service_account", "fic_limit") in {(v.field, v.rule) for v in caught.value.violations}


def test_the_final_approval_costs_the_same_statements_for_one_role_and_four(
    file_request: FileRequest, approver: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # On the path from approval to ready: the request is read once with its team, cluster,
    # requester and identity, the policy re-run reuses them, the decisions so far are read
    # once, and no nested block sets a savepoint (46 statements before, 30 at 2313a23). Then 25:
    # the new identity's tags reuse the decisions in hand (were: the approvals and each
    # approver read again), and its audit row and the approval's take the chain's lock and read
    # its tail once and go in one INSERT (were: twice, and two INSERTs). Then 24: the people
    # told are read with their notification preferences (were: a second query).
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    roles = (
        "Key Vault Secrets User",
        "Key Vault Crypto User",
        "Key Vault Certificate User",
        "Key Vault Secrets Officer",
    )
    counts = []
    # The first approval also caches the approver's groups on the user object: a warm-up.
    for n, k in enumerate((1, 1, 4)):
        identity_request = file_request(
            service_account=f"checkout-{n}",
            app_name=f"checkout-{n}",
            roles=tuple(RoleDraft(role, VAULT_SCOPE) for role in roles[:k]),
        )
        with (
            django_capture_on_commit_callbacks(execute=False),
            CaptureQueriesContext(connection) as statements,
        ):
            identity_request_approve(identity_request=identity_request, approver=approver)
        assert RoleAssignment.objects.filter(identity_request=identity_request).count() == k
        # One: the approval's own transaction, a savepoint here inside the test's.
        assert [q["sql"].split()[0] for q in statements.captured_queries].count("SAVEPOINT") == 1
        counts.append(len(statements))
    assert counts[1] == counts[2], counts
    # 23 statements and the test transaction's savepoint pair.
    assert counts[2] <= 25, [q["sql"][:80] for q in statements.captured_queries]
    sql = [q["sql"] for q in statements.captured_queries]
    assert sum(s.startswith('INSERT INTO "identities_auditevent"') for s in sql) == 1, sql
    assert sum("pg_advisory_xact_lock" in s for s in sql) <= 1, sql
