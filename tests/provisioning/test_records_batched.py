"""records_batched() and update_rows(): a phase's records written together, each row as its
record asked."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from identities.audit import audit_batch, audit_verify_chain
from identities.models import AuditEvent, ChildStatus, IdentityRequest, RoleAssignment
from identities.policy import RoleDraft
from identities.services import identity_request_approve, identity_request_create
from provisioning import services
from provisioning.azure import CallResult, RoleAssignmentState
from provisioning.bulk import update_rows
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.steps import run_steps
from tests.support.people import VAULT_SCOPE, DraftFactory

pytestmark = pytest.mark.django_db

ROLE_UPDATE = 'UPDATE "identities_roleassignment"'
AUDIT_INSERT = 'INSERT INTO "identities_auditevent"'
ROLES = ("Key Vault Secrets User", "Key Vault Crypto User", "Key Vault Certificate User")


@pytest.fixture
def approved(
    requester: Any, approver: Any, make_draft: DraftFactory, django_capture_on_commit_callbacks: Any
) -> IdentityRequest:
    draft = make_draft(roles=tuple(RoleDraft(role, VAULT_SCOPE) for role in ROLES))
    identity_request = identity_request_create(requester=requester, draft=draft)
    with django_capture_on_commit_callbacks(execute=False):
        return identity_request_approve(identity_request=identity_request, approver=approver)


def _assignments(identity_request: IdentityRequest) -> list[RoleAssignment]:
    return list(
        RoleAssignment.objects.filter(identity_request=identity_request)
        .select_related("role", "identity")
        .order_by("pk")
    )


def _active(identity_request: IdentityRequest, assignment: RoleAssignment, n: int) -> None:
    services.role_assignment_record_active(
        identity_request=identity_request,
        assignment=assignment,
        state=RoleAssignmentState(
            id=f"{assignment.scope}/providers/Microsoft.Authorization/roleAssignments/ra-{n}",
            name=f"ra-{n}",
            scope=assignment.scope,
            role_definition_guid=assignment.role.role_definition_guid,
            principal_id="p",
            principal_type="ServicePrincipal",
        ),
        call=CallResult(status=201, request_id=f"req-{n}"),
    )


def test_k_records_are_one_update_and_one_insert(approved: IdentityRequest) -> None:
    assignments = _assignments(approved)
    with CaptureQueriesContext(connection) as queries, audit_batch(), services.records_batched():
        for n, assignment in enumerate(assignments):
            _active(approved, assignment, n)
        # Held until the block ends: nothing of the rows or the trail is written yet.
        held = [q["sql"] for q in queries.captured_queries]
        assert not any(s.startswith((ROLE_UPDATE, AUDIT_INSERT)) for s in held)

    sql = [query["sql"] for query in queries.captured_queries]
    assert sum(s.startswith(ROLE_UPDATE) for s in sql) == 1
    assert sum(s.startswith(AUDIT_INSERT) for s in sql) == 1
    stored = {
        ra.pk: (ra.status, ra.name)
        for ra in RoleAssignment.objects.filter(identity_request=approved)
    }
    assert stored == {ra.pk: (ChildStatus.ACTIVE, f"ra-{n}") for n, ra in enumerate(assignments)}
    request_ids = list(
        AuditEvent.objects.filter(action="azure.role_assignment.created")
        .order_by("id")
        .values_list("data__azure_request_id", flat=True)
    )
    assert request_ids == ["req-0", "req-1", "req-2"]
    assert audit_verify_chain().ok


def test_one_row_recorded_twice_with_different_fields_keeps_the_records_order(
    approved: IdentityRequest,
) -> None:
    first, second, _third = _assignments(approved)
    with audit_batch(), services.records_batched():
        _active(approved, first, 0)
        _active(approved, second, 1)
        services.role_assignment_record_removed(
            identity_request=approved, assignment=first, call=CallResult(204, "req-gone")
        )

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.name) == (ChildStatus.REMOVED, "ra-0")
    assert (second.status, second.name) == (ChildStatus.ACTIVE, "ra-1")
    assert audit_verify_chain().ok


def test_a_failed_record_writes_nothing_of_the_phase(approved: IdentityRequest) -> None:
    assignments = _assignments(approved)
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), audit_batch(), services.records_batched():
        _active(approved, assignments[0], 0)
        raise RuntimeError("the next record failed")

    assert set(
        RoleAssignment.objects.filter(identity_request=approved).values_list("status", flat=True)
    ) == {ChildStatus.PENDING}
    assert AuditEvent.objects.count() == before
    assert audit_verify_chain().ok


def _new_steps(approved: IdentityRequest, count: int) -> list[ProvisioningStep]:
    return ProvisioningStep.objects.bulk_create(
        [
            ProvisioningStep(
                identity_request=approved, key=f"step-{n}", label=f"step {n}", position=n
            )
            for n in range(count)
        ]
    )


def _update_and_read_back(values: dict[int, dict[str, Any]]) -> tuple[str, dict[int, Any]]:
    """update_rows in one statement (checked); its SQL, and the rows' fields as stored."""
    with CaptureQueriesContext(connection) as queries:
        update_rows(ProvisioningStep, values)
    assert len(queries) == 1
    fields = list(next(iter(values.values())))
    stored = {
        row["pk"]: {name: row[name] for name in fields}
        for row in ProvisioningStep.objects.filter(pk__in=list(values)).values("pk", *fields)
    }
    return queries[0]["sql"], stored


def test_update_rows_gives_each_row_its_values_in_one_statement(approved: IdentityRequest) -> None:
    now = timezone.now()
    values = {
        row.pk: {
            "status": StepStatus.FAILED if n == 2 else StepStatus.DONE,
            "error": "refused" if n == 2 else "",
            "azure_request_id": f"req-{n}",
            "finished_at": now,
        }
        for n, row in enumerate(_new_steps(approved, 4))
    }

    sql, stored = _update_and_read_back(values)

    # Fields with one value for all rows are set plainly; the others per row.
    assert '"finished_at" = ' in sql and "CASE" in sql
    assert stored == values


def test_update_rows_casts_each_differing_column_to_its_type(approved: IdentityRequest) -> None:
    # A CASE of parameters is text to PostgreSQL: a timestamp, an integer and a nullable
    # column whose values differ per row are each cast to their column's type.
    start = timezone.now()
    values = {
        row.pk: {
            "status": StepStatus.RUNNING,
            "attempts": n + 1,
            "started_at": start + timedelta(seconds=n),
            "finished_at": None if n == 0 else start + timedelta(minutes=n),
        }
        for n, row in enumerate(_new_steps(approved, 3))
    }

    sql, stored = _update_and_read_back(values)

    assert sql.startswith('UPDATE "provisioning_provisioningstep" SET "status" = ')
    assert stored == values


def test_a_duplicate_run_does_not_reopen_a_step_another_run_closed(
    approved: IdentityRequest,
) -> None:
    # The winning run closed the step; a duplicate run sends the same write and fails before
    # its record commits (it lost the database): the step stays done, not running.
    done = ProvisioningStep.objects.create(
        identity_request=approved,
        key="identity",
        label="identity",
        position=0,
        status=StepStatus.DONE,
        azure_request_id="req-winner",
    )

    def record() -> None:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        run_steps(
            identity_request=approved,
            steps=[("identity", "identity", lambda: (None, "req-duplicate", record))],
        )

    done.refresh_from_db()
    assert (done.status, done.azure_request_id) == (StepStatus.DONE, "req-winner")
