"""The reconcile engine through the real azure-mgmt SDK clients, over HTTPS, against the emulator.

These run the engine in the test process (transactional DB, threads for the concurrent steps);
test_provisioning_worker.py drives the same path through real Celery worker processes.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.msi.models import FederatedIdentityCredential
from azure.mgmt.msi.models import Identity as Uami
from django.db import connections

from identities.audit.actions import AuditAction
from identities.errors import PolicyViolationError
from identities.models import (
    AuditEvent,
    ChildStatus,
    FederatedCredential,
    Identity,
    IdentityRequest,
    RequestKind,
    RequestStatus,
)
from identities.policy import RoleDraft
from identities.services import (
    identity_request_approve,
    identity_request_create,
    identity_request_decommission_create,
    identity_request_retry,
)
from provisioning.azure import THROTTLING_CODES, TRANSIENT_CODES, _gateway_for, translate
from provisioning.errors import TransientError
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.reconcile import reconcile_request, role_assignment_name
from provisioning.retry import Backoff, with_retries
from tests.support.emulator import build_azure_clients
from tests.support.people import SUBSCRIPTION, DraftFactory
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def vault_roles(count: int) -> tuple[RoleDraft, ...]:
    return tuple(
        RoleDraft(
            "Key Vault Secrets User",
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
            f"/providers/Microsoft.KeyVault/vaults/kv-payments-{n}",
        )
        for n in range(count)
    )


def fics_in_azure(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [fic for by_name in sandbox.arm()["fics"].values() for fic in by_name.values()]


@pytest.mark.parametrize("k", [1, 5, 10])
def test_approved_request_reaches_ready_with_exactly_two_plus_k_arm_writes(
    k: int, sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    identity_request = approved_request(roles=vault_roles(k))
    log_start = len(sandbox.emulator.requests())

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    identity = Identity.objects.get(pk=identity_request.identity_id)
    assert identity.status == Identity.Status.READY
    assert identity.client_id and identity.principal_id and identity.tenant_id
    assert identity.resource_id.lower().endswith(f"/userassignedidentities/{identity.name}".lower())

    arm = sandbox.arm()
    assert len(arm["identities"]) == 1
    [uami] = arm["identities"].values()
    assert uami["tags"]["managed-by"] == "workload-identity-portal"
    [fic] = fics_in_azure(sandbox)
    assert fic["subject"] == "system:serviceaccount:payments:checkout"
    assert fic["issuer"] == sandbox.aks["issuer_url"]
    assignments = list(arm["role_assignments"].values())
    assert len(assignments) == k
    assert {a["principal_type"] for a in assignments} == {"ServicePrincipal"}
    assert {a["principal_id"] for a in assignments} == {identity.principal_id}

    writes = sandbox.arm_writes(log_start)
    assert len(writes) == 2 + k, [w["path"] for w in writes]

    steps = ProvisioningStep.objects.filter(identity_request=identity_request)
    assert steps.count() == 2 + k
    assert set(steps.values_list("status", flat=True)) == {StepStatus.DONE}
    assert all(step.azure_request_id for step in steps)

    actions = list(
        AuditEvent.objects.filter(identity_request=identity_request).values_list(
            "action", flat=True
        )
    )
    assert actions.count("azure.identity.created") == 1
    assert actions.count("azure.federated_credential.created") == 1
    assert actions.count("azure.role_assignment.created") == k
    assert actions[-1] == "identity_request.ready"


def test_running_the_engine_twice_creates_nothing_twice(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    identity_request = approved_request(roles=vault_roles(2))
    reconcile_request(identity_request.pk)
    log_start = len(sandbox.emulator.requests())

    reconcile_request(identity_request.pk)

    assert sandbox.arm_writes(log_start) == []
    arm = sandbox.arm()
    assert len(arm["identities"]) == 1
    assert len(fics_in_azure(sandbox)) == 1
    assert len(arm["role_assignments"]) == 2


def test_steps_a_killed_run_left_running_after_recording_their_writes_are_closed_by_the_rerun(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    identity_request = approved_request(roles=vault_roles(2))
    reconcile_request(identity_request.pk)
    # What kill -9 leaves between recording the FIC and role assignments as active and closing
    # their steps: the request and identity still provisioning, those steps still running.
    IdentityRequest.objects.filter(pk=identity_request.pk).update(status=RequestStatus.PROVISIONING)
    Identity.objects.filter(pk=identity_request.identity_id).update(
        status=Identity.Status.PROVISIONING
    )
    ProvisioningStep.objects.filter(identity_request=identity_request).exclude(
        key="identity"
    ).update(status=StepStatus.RUNNING, finished_at=None)
    log_start = len(sandbox.emulator.requests())

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    steps = ProvisioningStep.objects.filter(identity_request=identity_request)
    assert set(steps.values_list("status", flat=True)) == {StepStatus.DONE}
    assert sandbox.arm_writes(log_start) == []  # their writes were recorded: none is repeated


def test_role_assignment_names_are_deterministic_uuid5() -> None:
    name = role_assignment_name(scope="/subscriptions/S/x", principal_id="P", role_guid="G")
    assert name == role_assignment_name(scope="/SUBSCRIPTIONS/s/X", principal_id="p", role_guid="g")
    assert name != role_assignment_name(scope="/subscriptions/S/y", principal_id="P", role_guid="G")


def test_a_permanent_failure_marks_the_request_failed_and_retry_finishes_it_exactly_once(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    settings: Any,
) -> None:
    settings.PROVISIONING_STEP_ATTEMPTS = 3
    identity_request = approved_request(roles=vault_roles(3))
    # Every role assignment write fails: the identity and FIC succeed, the roles do not.
    sandbox.emulator.config(fault_rate_500=1.0, fault_ops=["ra.put"])

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.FAILED
    assert "InternalServerError" in identity_request.last_error
    assert "request id" in identity_request.last_error
    failed = ProvisioningStep.objects.filter(
        identity_request=identity_request, status=StepStatus.FAILED
    )
    assert failed.count() == 3
    assert set(failed.values_list("attempts", flat=True)) == {3}
    assert AuditEvent.objects.filter(
        identity_request=identity_request, action="identity_request.failed"
    ).exists()

    sandbox.emulator.config(fault_rate_500=0.0)
    identity_request_retry(identity_request=identity_request, actor=requester)
    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    arm = sandbox.arm()
    assert len(arm["identities"]) == 1
    assert len(fics_in_azure(sandbox)) == 1
    assert len(arm["role_assignments"]) == 3


def test_throttling_and_server_errors_are_retried_until_ready(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    identity_request = approved_request(roles=vault_roles(4))
    sandbox.emulator.config(
        write_bucket_capacity=2,
        write_bucket_refill_per_second=4,
        fault_rate_500=0.3,
        fault_seed=7,
    )

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    statuses = [entry["status"] for entry in sandbox.emulator.requests()]
    assert 429 in statuses and 500 in statuses  # the faults really happened
    assert len(sandbox.arm()["role_assignments"]) == 4
    # The SDK's own retries are off: every fault the emulator served is an engine retry.
    faults = sum(
        1
        for entry in sandbox.emulator.requests()
        if entry["status"] in {429, 500} and entry["path"].startswith("/subscriptions/")
    )
    attempts = ProvisioningStep.objects.filter(identity_request=identity_request).values_list(
        "attempts", flat=True
    )
    assert sum(attempts) - len(attempts) == faults


def test_throttling_that_never_lets_up_fails_the_request_within_its_budget(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, settings: Any
) -> None:
    """429s do not use up a step's attempts, but waiting them out is bounded by time."""
    identity_request = approved_request(roles=vault_roles(1))
    settings.PROVISIONING_THROTTLE_BUDGET_SECONDS = 2.5
    # One write, then one token every 100 s: every later write is throttled.
    sandbox.emulator.config(write_bucket_capacity=1, write_bucket_refill_per_second=0.01)
    started = time.monotonic()

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.FAILED
    assert "SubscriptionRequestsThrottled" in identity_request.last_error
    assert time.monotonic() - started < 30


def test_principal_not_found_during_replication_is_retried(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    identity_request = approved_request(roles=vault_roles(2))
    sandbox.emulator.config(
        principal_replication_delay_seconds=1.5, principal_not_found_even_with_type=True
    )

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    codes = [entry.get("error") for entry in sandbox.emulator.requests()]
    assert "PrincipalNotFound" in codes
    assert len(sandbox.arm()["role_assignments"]) == 2


def _add_service_account(
    identity: Identity, service_account: str, requester: Any, approver: Any, make_draft: Any
) -> IdentityRequest:
    identity_request = identity_request_create(
        requester=requester,
        draft=make_draft(
            kind=RequestKind.ADD_SERVICE_ACCOUNT,
            identity_id=identity.pk,
            service_account=service_account,
            roles=(),
        ),
    )
    identity_request_approve(identity_request=identity_request, approver=approver)
    return identity_request


def _active_credentials(identity: Identity, names: list[str]) -> None:
    """Credentials the database holds as active in Azure (the portal's count), none in Azure."""
    for name in names:
        FederatedCredential.objects.create(
            identity=identity,
            name=name,
            issuer=identity.cluster.oidc_issuer_url,
            subject=f"system:serviceaccount:payments:{name}",
            namespace="payments",
            service_account=name,
            status=ChildStatus.ACTIVE,
        )


def test_concurrent_service_accounts_on_one_identity_are_serialized_without_failure(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
) -> None:
    first = approved_request(roles=vault_roles(1))
    reconcile_request(first.pk)
    identity = Identity.objects.get(pk=first.refresh_from_db() or first.identity_id)
    # Each FIC write holds the identity for 300 ms: unserialized writes would collide (409).
    sandbox.emulator.config(fic_write_ms=300)
    extra = [
        _add_service_account(identity, f"worker-{n}", requester, approver, make_draft)
        for n in range(4)
    ]

    def run(pk: int) -> None:
        try:
            reconcile_request(pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(r.pk,)) for r in extra]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    for identity_request in extra:
        identity_request.refresh_from_db()
        assert identity_request.status == RequestStatus.READY, identity_request.last_error
    subjects = {fic["subject"] for fic in fics_in_azure(sandbox)}
    assert subjects == {
        "system:serviceaccount:payments:checkout",
        *(f"system:serviceaccount:payments:worker-{n}" for n in range(4)),
    }
    assert len(sandbox.arm()["identities"]) == 1


def test_the_21st_service_account_is_refused_before_any_azure_call(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    make_draft: DraftFactory,
) -> None:
    first = approved_request(roles=vault_roles(1))
    reconcile_request(first.pk)
    first.refresh_from_db()
    identity = Identity.objects.get(pk=first.identity_id)
    _active_credentials(identity, [f"extra-{n}" for n in range(19)])
    log_start = len(sandbox.emulator.requests())

    with pytest.raises(PolicyViolationError) as refused:
        identity_request_create(
            requester=requester,
            draft=make_draft(
                kind=RequestKind.ADD_SERVICE_ACCOUNT,
                identity_id=identity.pk,
                service_account="one-too-many",
                roles=(),
            ),
        )
    assert any("20" in v.message for v in refused.value.violations)
    assert sandbox.arm_writes(log_start) == []


def test_a_credential_that_turned_21st_after_approval_is_refused_by_the_engine_unsent(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
) -> None:
    """The policy let the 20th through; another credential turned active before the run (as a
    concurrent request's would): the engine's own check, whose count is now read while the
    identity's PUT is in flight, refuses it before any FIC write."""
    first = approved_request(roles=vault_roles(1))
    reconcile_request(first.pk)
    first.refresh_from_db()
    identity = Identity.objects.get(pk=first.identity_id)
    _active_credentials(identity, [f"extra-{n}" for n in range(18)])
    twentieth = _add_service_account(identity, "the-twentieth", requester, approver, make_draft)
    _active_credentials(identity, ["raced-in"])  # 20 active besides the request's own
    log_start = len(sandbox.emulator.requests())

    reconcile_request(twentieth.pk)

    twentieth.refresh_from_db()
    assert twentieth.status == RequestStatus.FAILED
    assert "FederatedIdentityCredentialLimit" in twentieth.last_error
    assert "already has 20 federated credentials" in twentieth.last_error
    writes = sandbox.arm_writes(log_start)
    assert not [w for w in writes if "federatedidentitycredentials" in w["path"].lower()]


@pytest.mark.parametrize(
    "refusal",
    [
        {},  # the emulator's default body (400 BadRequest)
        {"fic_limit_error_status": 409, "fic_limit_error_code": "Conflict"},
        {"fic_limit_error_status": 400, "fic_limit_error_code": "InvalidRequest"},
    ],
)
def test_azure_refusing_a_21st_credential_is_named_by_status_and_count_whatever_its_body(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
    refusal: dict[str, Any],
) -> None:
    """Credentials made outside the portal fill the identity in Azure: the portal's own count
    lets the request through, Azure refuses it, and the engine names the limit from the status
    and Azure's count, not from the (unattested) text."""
    first = approved_request(roles=vault_roles(1))
    reconcile_request(first.pk)
    first.refresh_from_db()
    identity = Identity.objects.get(pk=first.identity_id)
    sandbox.emulator.config(fic_write_ms=0, **refusal)
    clients = build_azure_clients(sandbox.emulator, SUBSCRIPTION)
    for n in range(19):
        clients.msi.federated_identity_credentials.create_or_update(
            identity.resource_group,
            identity.name,
            f"by-hand-{n}",
            FederatedIdentityCredential(
                issuer=identity.cluster.oidc_issuer_url,
                subject=f"system:serviceaccount:payments:by-hand-{n}",
                audiences=["api://AzureADTokenExchange"],
            ),
        )
    extra = _add_service_account(identity, "one-too-many", requester, approver, make_draft)

    reconcile_request(extra.pk)

    extra.refresh_from_db()
    assert extra.status == RequestStatus.FAILED
    assert "FederatedIdentityCredentialLimit" in extra.last_error
    assert "already holds 20 federated credentials" in extra.last_error
    assert "by-hand-0" in extra.last_error


def test_a_role_on_a_resource_that_does_not_exist_fails_with_arms_404(
    sandbox: Sandbox, requester: Any, approver: Any, make_draft: DraftFactory
) -> None:
    """Filed without registering the vault in the emulator's inventory: ARM answers 404
    ResourceNotFound, a permanent error the request names."""
    missing = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
        "/providers/Microsoft.KeyVault/vaults/kv-deleted-last-week"
    )
    identity_request = identity_request_create(
        requester=requester,
        draft=make_draft(roles=(RoleDraft("Key Vault Secrets User", missing),)),
    )
    identity_request_approve(identity_request=identity_request, approver=approver)

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.FAILED
    assert "ResourceNotFound" in identity_request.last_error
    assert "kv-deleted-last-week" in identity_request.last_error
    assert sandbox.arm()["role_assignments"] == {}


def test_decommission_removes_role_assignments_credentials_and_the_identity(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, requester: Any, approver: Any
) -> None:
    first = approved_request(roles=vault_roles(3))
    reconcile_request(first.pk)
    first.refresh_from_db()
    identity = Identity.objects.get(pk=first.identity_id)
    decommission = identity_request_decommission_create(
        requester=requester, identity=identity, justification="The app was retired."
    )
    identity_request_approve(identity_request=decommission, approver=approver)
    log_start = len(sandbox.emulator.requests())

    reconcile_request(decommission.pk)

    decommission.refresh_from_db()
    assert decommission.status == RequestStatus.READY, decommission.last_error
    identity.refresh_from_db()
    assert identity.status == Identity.Status.DECOMMISSIONED
    arm = sandbox.arm()
    assert arm["identities"] == {}
    assert arm["role_assignments"] == {}
    assert fics_in_azure(sandbox) == []
    deletes = [w for w in sandbox.arm_writes(log_start) if w["method"] == "DELETE"]
    paths = [w["path"].lower() for w in deletes]
    # Order: every role assignment before the FIC, the FIC before the identity.
    assert len(deletes) == 3 + 1 + 1
    assert all("roleassignments" in p for p in paths[:3])
    assert "federatedidentitycredentials" in paths[3]
    assert paths[4].endswith(identity.name.lower())
    assert not identity.role_assignments.exclude(status=ChildStatus.REMOVED).exists()


def test_decommission_finishes_when_the_resource_groups_were_deleted_by_hand(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory, requester: Any, approver: Any
) -> None:
    """Someone deleted the identity's resource group and the granted scope's outside the
    portal: ARM's proxy answers every DELETE under them 404 (not the provider's 204), and the
    decommission counts that as gone, each answer audited with its status and request id."""
    first = approved_request(roles=vault_roles(2))
    reconcile_request(first.pk)
    identity = Identity.objects.get(pk=first.identity_id)
    for group in {identity.resource_group, "rg-payments"}:
        sandbox.emulator.control(
            "DELETE", f"resources?id=/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}"
        )
    decommission = identity_request_decommission_create(
        requester=requester, identity=identity, justification="The app was retired."
    )
    identity_request_approve(identity_request=decommission, approver=approver)
    log_start = len(sandbox.emulator.requests())

    reconcile_request(decommission.pk)

    decommission.refresh_from_db()
    assert decommission.status == RequestStatus.READY, decommission.last_error
    identity.refresh_from_db()
    assert identity.status == Identity.Status.DECOMMISSIONED
    deletes = [w for w in sandbox.arm_writes(log_start) if w["method"] == "DELETE"]
    assert [w["status"] for w in deletes] == [404] * 4  # 2 assignments, the FIC, the identity
    audited = {
        event.action: event.data
        for event in AuditEvent.objects.filter(identity_request=decommission)
    }
    deleted = audited[AuditAction.AZURE_IDENTITY_DELETED]
    assert deleted["http_status"] == 404
    assert deleted["azure_request_id"] == deletes[-1]["request_id"]
    assert audited[AuditAction.AZURE_ROLE_ASSIGNMENT_DELETED]["http_status"] == 404
    assert not identity.role_assignments.exclude(status=ChildStatus.REMOVED).exists()


def test_decommission_waits_out_arms_delete_throttling_which_writes_do_not_drain(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    settings: Any,
) -> None:
    """ARM gives deletes their own token bucket and answers 429 SubscriptionRequestsThrottled;
    the engine waits it out (it spends no attempts) and an empty write bucket does not stop
    deletes."""
    first = approved_request(roles=vault_roles(3))
    reconcile_request(first.pk)
    first.refresh_from_db()
    identity = Identity.objects.get(pk=first.identity_id)
    decommission = identity_request_decommission_create(
        requester=requester, identity=identity, justification="The app was retired."
    )
    identity_request_approve(identity_request=decommission, approver=approver)
    settings.PROVISIONING_STEP_ATTEMPTS = 1  # throttling must not spend attempts
    sandbox.emulator.config(
        write_bucket_capacity=1,
        write_bucket_refill_per_second=0.001,
        delete_bucket_capacity=1,
        delete_bucket_refill_per_second=2,
    )
    log_start = len(sandbox.emulator.requests())

    reconcile_request(decommission.pk)

    decommission.refresh_from_db()
    assert decommission.status == RequestStatus.READY, decommission.last_error
    served = [w for w in sandbox.arm_writes(log_start) if w["method"] == "DELETE"]
    throttled = [w for w in served if w["status"] == 429]
    assert throttled, "the delete bucket of 1 never throttled"
    assert {w["error"] for w in throttled} == {"SubscriptionRequestsThrottled"}
    assert sandbox.arm()["identities"] == {}


def test_arms_throttling_answer_is_waited_out_as_throttling(sandbox: Sandbox) -> None:
    """ARM's 429 SubscriptionRequestsThrottled, through the real SDK, becomes a TransientError
    the retry waits out on its time budget; every throttling name is in TRANSIENT_CODES."""
    assert {"SubscriptionRequestsThrottled", "TooManyRequestsReceived", "TooManyRequests"} <= (
        THROTTLING_CODES
    )
    assert THROTTLING_CODES <= TRANSIENT_CODES
    client = _gateway_for.__wrapped__("emulator", "throttling").msi(SUBSCRIPTION)
    sandbox.emulator.config(write_bucket_capacity=1, write_bucket_refill_per_second=0.5)
    client.user_assigned_identities.create_or_update("rg-x", "id-a", Uami(location="eastus"))
    with pytest.raises(HttpResponseError) as caught:
        client.user_assigned_identities.create_or_update(
            "rg-x", "id-a", Uami(location="eastus"), retry_total=0
        )

    error = translate(caught.value, operation="create managed identity id-a")

    assert isinstance(error, TransientError)
    assert (error.code, error.status, error.wait_out) == (
        "SubscriptionRequestsThrottled",
        429,
        True,
    )
    assert error.retry_after is not None
    assert error.retry_after >= 1


def test_an_entra_error_msal_replays_is_waited_out_instead_of_spending_the_attempts(
    sandbox: Sandbox,
) -> None:
    """MSAL answers every token request from its copy of Entra's last 5xx for 5 s without
    calling Entra: retries inside that window are no calls, so they must not use up a step's
    attempts (the first real call after Entra recovers gets the token)."""
    # A credential of its own: the process-wide one already holds a token and asks for none.
    gateway = _gateway_for.__wrapped__("emulator", "a fresh credential")
    read = functools.partial(
        gateway.get_identity, subscription_id=SUBSCRIPTION, resource_group="rg-payments", name="x"
    )
    sandbox.emulator.config(fault_rate_500=1.0, fault_ops=["entra.token.secret"])
    with pytest.raises(TransientError) as outage:
        read()
    assert outage.value.code == "TokenEndpointUnavailable"
    sandbox.emulator.config(fault_rate_500=0.0)  # Entra is back; MSAL still replays its 500

    waits: list[TransientError] = []
    backoff = Backoff(attempts=3, base=0.05, cap=0.2, throttle_budget=30.0)
    found = with_retries(read, backoff=backoff, on_retry=lambda _n, error: waits.append(error))
    assert found is None  # the identity does not exist; the read itself succeeded

    # Waited out, not counted against the attempts (three would all have been spent on the
    # replayed answer within about half a second). Since 9b7d0ba the wait is the replay window
    # itself (a wait_out error's Retry-After is no longer capped), so one wait reaches the first
    # real call where several short ones did before.
    assert waits and all(error.wait_out for error in waits)
    assert {error.code for error in waits} == {"TokenEndpointUnavailable"}
    token_calls = [e for e in sandbox.emulator.requests() if e["op"] == "entra.token.secret"]
    assert [e["status"] for e in token_calls][-1] == 200


def test_entra_not_answering_the_token_request_in_time_is_a_network_error_not_a_refusal(
    sandbox: Sandbox, settings: Any
) -> None:
    """azure-identity wraps every failure of the token request, a read timeout included, in
    ClientAuthenticationError: a request must not fail for good because Entra was slow once
    (a storm test saw one fail with AuthenticationFailed)."""
    settings.AZURE_HTTP_READ_TIMEOUT = 1
    settings.AZURE_HTTP_CONNECT_TIMEOUT = 1
    # A credential of its own: the process-wide one already holds a token and asks for none.
    gateway = _gateway_for.__wrapped__("emulator", "a fresh credential for the timeout")
    sandbox.emulator.config(
        fault_rate_timeout=1.0, fault_ops=["entra.token.secret"], fault_timeout_seconds=2
    )

    with pytest.raises(TransientError) as slow:
        gateway.get_identity(subscription_id=SUBSCRIPTION, resource_group="rg-payments", name="x")

    assert slow.value.code == "Network"
    assert "token" in str(slow.value)
    sandbox.emulator.config(fault_rate_timeout=0.0)
    # Entra answers again: the same gateway reads (the identity does not exist: None).
    assert (
        gateway.get_identity(subscription_id=SUBSCRIPTION, resource_group="rg-payments", name="x")
        is None
    )
