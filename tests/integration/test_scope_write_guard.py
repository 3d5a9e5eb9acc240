"""Belt and braces: a scope that got past the policy is refused at the write, before the SDK.

The rows here are what a request approved before the scope rules existed (or written by a bug)
looks like; the gateway must never put such a scope into an ARM URL.
"""

from __future__ import annotations

import pytest

from identities.audit.actions import AuditAction
from identities.models import (
    AuditEvent,
    ChildStatus,
    IdentityRequest,
    RequestedRole,
    RequestStatus,
    RoleAssignment,
)
from identities.policy import RoleDraft
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.reconcile import reconcile_request
from tests.support.people import VAULT_SCOPE
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "suffix", ["/../../../../..", "?api-version=x", "/%2e%2e/%2e%2e", "#x", "/./."]
)
def test_a_bad_scope_that_bypassed_the_policy_is_refused_at_the_write(
    suffix: str, sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    identity_request = approved_request(roles=(RoleDraft("Key Vault Secrets User", VAULT_SCOPE),))
    RequestedRole.objects.filter(identity_request=identity_request).update(
        scope=VAULT_SCOPE + suffix
    )
    RoleAssignment.objects.filter(identity_request=identity_request).update(
        scope=VAULT_SCOPE + suffix
    )
    log_start = len(sandbox.emulator.requests())

    reconcile_request(identity_request.pk)

    identity_request = IdentityRequest.objects.get(pk=identity_request.pk)
    assert identity_request.status == RequestStatus.FAILED
    assert "UnsafeScope" in identity_request.last_error
    [role_step] = ProvisioningStep.objects.filter(
        identity_request=identity_request, key__startswith="role:"
    )
    assert role_step.status == StepStatus.FAILED
    assert role_step.attempts == 1  # refused once, never retried
    role_writes = [
        entry for entry in sandbox.arm_writes(log_start) if "roleAssignments" in entry["path"]
    ]
    assert role_writes == []
    assert sandbox.arm()["role_assignments"] == {}


def test_a_scope_not_in_its_canonical_spelling_is_refused_at_the_write_and_audited(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    """The engine sends byte for byte the approved canonical scope, nothing else: a row in
    another spelling (written before scopes were canonical, or by a bug) is not sent."""
    identity_request = approved_request(roles=(RoleDraft("Key Vault Secrets User", VAULT_SCOPE),))
    lowered = VAULT_SCOPE.replace("/resourceGroups/", "/resourcegroups/")
    RoleAssignment.objects.filter(identity_request=identity_request).update(scope=lowered)
    log_start = len(sandbox.emulator.requests())

    reconcile_request(identity_request.pk)

    identity_request = IdentityRequest.objects.get(pk=identity_request.pk)
    assert identity_request.status == RequestStatus.FAILED
    assert "canonical spelling" in identity_request.last_error
    [refused] = AuditEvent.objects.filter(
        identity_request=identity_request, action=AuditAction.AZURE_ROLE_ASSIGNMENT_REFUSED
    )
    assert refused.data["scope"] == lowered
    role_writes = [
        entry for entry in sandbox.arm_writes(log_start) if "roleAssignments" in entry["path"]
    ]
    assert role_writes == []


def test_azure_answering_another_scope_fails_the_step_without_retry_and_is_audited(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    """After the write the engine compares the `scope` Azure returns with the approved one: a
    different answer fails the step at once (no retry) with an audit row naming both."""
    identity_request = approved_request(roles=(RoleDraft("Key Vault Secrets User", VAULT_SCOPE),))
    elsewhere = VAULT_SCOPE.rsplit("/", 1)[0] + "/kv-someone-else"
    sandbox.emulator.config(role_assignment_answer_scope=elsewhere)
    log_start = len(sandbox.emulator.requests())

    reconcile_request(identity_request.pk)

    identity_request = IdentityRequest.objects.get(pk=identity_request.pk)
    assert identity_request.status == RequestStatus.FAILED
    assert "Azure answered with scope" in identity_request.last_error
    [role_step] = ProvisioningStep.objects.filter(
        identity_request=identity_request, key__startswith="role:"
    )
    assert role_step.status == StepStatus.FAILED
    assert role_step.attempts == 1  # refused once, never retried
    [refused] = AuditEvent.objects.filter(
        identity_request=identity_request, action=AuditAction.AZURE_ROLE_ASSIGNMENT_REFUSED
    )
    assert refused.data["scope"] == VAULT_SCOPE
    assert refused.data["returned_scope"] == elsewhere
    role_puts = [
        entry
        for entry in sandbox.arm_writes(log_start)
        if "roleAssignments" in entry["path"] and entry["method"] == "PUT"
    ]
    assert len(role_puts) == 1
    assignment = RoleAssignment.objects.get(identity_request=identity_request)
    assert assignment.status == ChildStatus.PENDING
