"""Two approvers press Approve on the same request at the same moment (real PostgreSQL)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from identities.audit import audit_verify_chain
from identities.errors import ConflictError, PolicyViolationError
from identities.models import Approval, AuditEvent, Identity, IdentityRequest
from identities.policy import RoleDraft
from identities.services import (
    identity_request_approve,
    identity_request_change_create,
    identity_request_create,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
)
from identities.work import Work
from tests.support.people import STORAGE_SCOPE, DraftFactory
from tests.support.services import postgres_or_missing

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _approve_together(identity_request_id: int, approvers: list[Any]) -> list[object]:
    barrier = threading.Barrier(len(approvers))
    outcomes: list[object] = [None] * len(approvers)

    def approve(index: int) -> None:
        try:
            identity_request = IdentityRequest.objects.get(pk=identity_request_id)
            barrier.wait()
            outcomes[index] = identity_request_approve(
                identity_request=identity_request, approver=approvers[index]
            )
        except Exception as exc:  # handed back to the test thread
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(len(approvers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_two_simultaneous_approvals_one_wins_and_the_other_gets_a_clear_conflict(
    requester: Any,
    approver: Any,
    second_approver: Any,
    make_draft: DraftFactory,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    postgres_or_missing()
    identity_request = identity_request_create(requester=requester, draft=make_draft())

    # The transactional test really commits, so on_commit callbacks run: `work_sent` records it.
    outcomes = _approve_together(identity_request.pk, [approver, second_approver])

    winners = [o for o in outcomes if isinstance(o, IdentityRequest)]
    losers = [o for o in outcomes if isinstance(o, ConflictError)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert f"request {identity_request.pk} is no longer pending (now approved)" in str(losers[0])
    identity_request.refresh_from_db()
    assert identity_request.status == IdentityRequest.Status.APPROVED
    assert Approval.objects.count() == 1
    assert AuditEvent.objects.filter(action="identity_request.approved").count() == 1
    assert Identity.objects.count() == 1
    # Provisioning asked for once (the approval's notifications are sent by their own work).
    assert [sent for sent in work_sent if sent[0] == Work.PROVISION] == [
        (Work.PROVISION, (identity_request.pk,))
    ]
    report = audit_verify_chain()
    assert report.ok, report.reason


def test_two_simultaneous_first_approvals_of_an_exception_complete_it(
    requester: Any,
    approver: Any,
    second_approver: Any,
    make_draft: DraftFactory,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    """The row lock makes the second approver see the first approval, so the count reaches two."""
    postgres_or_missing()
    from identities.policy import RoleDraft
    from tests.support.people import RESOURCE_GROUP_SCOPE

    identity_request = identity_request_create(
        requester=requester,
        draft=make_draft(
            roles=(RoleDraft("Contributor", RESOURCE_GROUP_SCOPE),),
            is_exception=True,
            justification="Nightly migration recreates resources in the group.",
        ),
    )

    outcomes = _approve_together(identity_request.pk, [approver, second_approver])

    assert all(isinstance(o, IdentityRequest) for o in outcomes), outcomes
    identity_request.refresh_from_db()
    assert identity_request.status == IdentityRequest.Status.APPROVED
    assert list(
        AuditEvent.objects.filter(action__startswith="identity_request.ap")
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["identity_request.approval_recorded", "identity_request.approved"]
    assert audit_verify_chain().ok


def test_two_simultaneous_change_requests_on_one_identity_one_is_filed_the_other_names_it(
    requester: Any,
    teammate: Any,
    approver: Any,
    make_draft: DraftFactory,
    work_sent: list[tuple[Work, tuple[object, ...]]],
) -> None:
    """The identity's row lock makes the second filing see the first change."""
    postgres_or_missing()
    origin = identity_request_create(requester=requester, draft=make_draft())
    identity_request_approve(identity_request=origin, approver=approver)
    identity_request_mark_provisioning(identity_request=origin)
    identity_request_mark_ready(identity_request=origin)
    identity = Identity.objects.get(pk=origin.identity_id)
    people = [requester, teammate]
    barrier = threading.Barrier(len(people))
    outcomes: list[object] = [None] * len(people)

    def file(index: int) -> None:
        try:
            barrier.wait()
            outcomes[index] = identity_request_change_create(
                requester=people[index],
                identity=identity,
                add=[RoleDraft("Storage Blob Data Reader", STORAGE_SCOPE)],
                remove=[],
                justification="Checkout reads product images too.",
            )
        except Exception as exc:  # handed back to the test thread
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=file, args=(i,)) for i in range(len(people))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    filed = [o for o in outcomes if isinstance(o, IdentityRequest)]
    refused = [o for o in outcomes if isinstance(o, PolicyViolationError)]
    assert len(filed) == 1 and len(refused) == 1, outcomes
    [violation] = refused[0].violations
    assert (violation.field, violation.rule) == ("identity", "change_in_progress")
    assert f"#{filed[0].pk}" in violation.message
    assert IdentityRequest.objects.filter(kind="change_roles").count() == 1
