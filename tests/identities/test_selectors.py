"""Who sees what, the approval queue, and reading without N+1 queries."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from identities.audit.selectors import AuditEventFilters, audit_events_visible_to
from identities.errors import NotFoundError, PermissionDeniedError
from identities.models import IdentityRequest
from identities.policy import RoleDraft
from identities.selectors import (
    approval_queue,
    identities_visible_to,
    identity_request_get,
    identity_requests_visible_to,
    namespaces_owned_by,
)
from identities.services import identity_request_approve
from tests.identities.conftest import FileRequest
from tests.support.people import RESOURCE_GROUP_SCOPE, SEARCH_VAULT_SCOPE, IdentityFactory

pytestmark = pytest.mark.django_db


def test_requesters_see_their_teams_requests_only(
    file_request: FileRequest, teammate: Any, outsider: Any
) -> None:
    mine = file_request()
    theirs = file_request(
        as_user=outsider,
        team="search",
        namespace="search",
        app_name="indexer",
        service_account="indexer",
        roles=(RoleDraft("Key Vault Secrets User", SEARCH_VAULT_SCOPE),),
    )

    assert list(identity_requests_visible_to(teammate)) == [mine]
    assert list(identity_requests_visible_to(outsider)) == [theirs]
    with pytest.raises(NotFoundError):
        identity_request_get(user=outsider, pk=mine.pk)
    with pytest.raises(NotFoundError):
        identity_request_get(user=outsider, pk=999_999)
    assert identity_request_get(user=teammate, pk=mine.pk) == mine


def test_approvers_auditors_and_admins_see_everything(
    file_request: FileRequest, approver: Any, auditor: Any, admin_user: Any
) -> None:
    mine = file_request()
    for user in (approver, auditor, admin_user):
        assert list(identity_requests_visible_to(user)) == [mine]


def test_identities_are_visible_to_their_team(
    team: Any, other_team: Any, cluster: Any, requester: Any, auditor: Any
) -> None:
    ours = IdentityFactory(team=team, cluster=cluster)
    IdentityFactory(team=other_team, cluster=cluster)
    assert list(identities_visible_to(requester)) == [ours]
    assert identities_visible_to(auditor).count() == 2


def test_the_form_offers_the_namespaces_the_users_teams_own(
    cluster: Any, requester: Any, outsider: Any
) -> None:
    assert namespaces_owned_by(requester, cluster) == ["payments", "payments-jobs"]
    assert namespaces_owned_by(outsider, cluster) == ["search"]


def test_the_approval_queue_shows_policy_warnings_risk_and_who_may_approve(
    file_request: FileRequest,
    approver: Any,
    second_approver: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    plain = file_request()
    exception = file_request(
        app_name="migrator",
        service_account="migrator",
        roles=(RoleDraft("Contributor", RESOURCE_GROUP_SCOPE),),
        is_exception=True,
        justification="Nightly migration recreates resources in the group.",
    )
    with django_capture_on_commit_callbacks(execute=False):
        identity_request_approve(identity_request=exception, approver=approver)

    queue = {item.identity_request.pk: item for item in approval_queue(approver)}
    assert set(queue) == {plain.pk, exception.pk}
    assert queue[plain.pk].risk.level == "low"
    assert queue[plain.pk].can_approve
    assert queue[exception.pk].risk.level == "high"
    assert queue[exception.pk].approvals == ("sam",)
    assert queue[exception.pk].approvals_required == 2
    assert not queue[exception.pk].can_approve
    assert "privileged_role" in {w.rule for w in queue[exception.pk].policy.warnings}
    assert {
        item.identity_request.pk for item in approval_queue(second_approver) if item.can_approve
    } == {
        plain.pk,
        exception.pk,
    }


def test_only_approvers_and_team_members_have_a_queue(requester: Any, auditor: Any) -> None:
    with pytest.raises(PermissionDeniedError):
        approval_queue(auditor)
    assert approval_queue(requester) == []  # nothing of another team waits for payments


def test_listing_requests_takes_a_fixed_number_of_queries(
    file_request: FileRequest, approver: Any
) -> None:
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            for identity_request in identity_requests_visible_to(approver):
                _ = (identity_request.team.name, identity_request.cluster.name)
                _ = [(r.role.name, r.scope) for r in identity_request.roles.all()]
                _ = [a.approver.username for a in identity_request.approvals.all()]
        return len(queries)

    file_request()
    count_queries()  # the approver's role lookup is cached after the first call
    one = count_queries()
    file_request(app_name="checkout-2", service_account="checkout-2")
    file_request(app_name="checkout-3", service_account="checkout-3")
    assert count_queries() == one


def test_audit_events_follow_request_visibility_and_filters(
    file_request: FileRequest,
    outsider: Any,
    teammate: Any,
    auditor: Any,
    approver: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    mine = file_request()
    with django_capture_on_commit_callbacks(execute=False):
        identity_request_approve(identity_request=mine, approver=approver)

    assert audit_events_visible_to(outsider).count() == 0
    team_view = list(audit_events_visible_to(teammate).values_list("action", flat=True))
    assert team_view == [
        "identity_request.approved",
        "identity.created",
        "identity_request.created",
    ]
    assert (
        audit_events_visible_to(auditor, AuditEventFilters(action="identity_request.")).count() == 2
    )
    assert (
        audit_events_visible_to(
            auditor, AuditEventFilters(identity_request_id=mine.pk, actor_id=approver.pk)
        ).count()
        == 2
    )
    assert isinstance(mine, IdentityRequest)
