"""Verification: a real TokenRequest on the sandbox cluster exchanged at the emulator's Entra."""

from __future__ import annotations

import time
from typing import Any

import pytest
from azure.mgmt.msi.models import FederatedIdentityCredential

from identities.models import AuditEvent, Cluster, FederatedCredential, IdentityRequest
from provisioning.models import VerificationOutcome
from provisioning.reconcile import reconcile_request
from provisioning.verification import identity_request_verify
from tests.support.emulator import build_azure_clients
from tests.support.people import SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ready_request(sandbox: Sandbox, approved_request: ApprovedRequestFactory) -> IdentityRequest:
    identity_request = approved_request()
    reconcile_request(identity_request.pk)
    identity_request.refresh_from_db()
    assert identity_request.status == "ready", identity_request.last_error
    return identity_request


def alter_fic(sandbox: Sandbox, identity_request: IdentityRequest, **changes: str) -> None:
    """Change the FIC in Azure behind the portal's back, through the real SDK."""
    fic = FederatedCredential.objects.get(identity_request=identity_request)
    identity = fic.identity
    values = {"issuer": fic.issuer, "subject": fic.subject, **changes}
    clients = build_azure_clients(sandbox.emulator, SUBSCRIPTION)
    clients.msi.federated_identity_credentials.create_or_update(
        identity.resource_group,
        identity.name,
        fic.name,
        FederatedIdentityCredential(audiences=[fic.audience], **values),
    )


def test_a_ready_request_verifies_as_working(
    sandbox: Sandbox, ready_request: IdentityRequest
) -> None:
    verification = identity_request_verify(identity_request_id=ready_request.pk)

    assert verification is not None
    assert verification.outcome == VerificationOutcome.WORKS, verification.summary
    assert verification.token_expires_at is not None
    assert verification.mismatches == []
    event = AuditEvent.objects.get(action="identity_request.verification_works")
    assert event.identity_request_id == ready_request.pk
    assert event.actor is None


def test_a_wrong_subject_yields_aadsts700213_naming_the_subject_and_both_values(
    sandbox: Sandbox, ready_request: IdentityRequest
) -> None:
    alter_fic(sandbox, ready_request, subject="system:serviceaccount:payments:someone-else")

    verification = identity_request_verify(identity_request_id=ready_request.pk)

    assert verification is not None
    assert verification.outcome == VerificationOutcome.FAILED
    assert verification.error_code == "AADSTS700213"
    [mismatch] = verification.mismatches
    assert mismatch["field"] == "subject"
    assert mismatch["expected"] == "system:serviceaccount:payments:someone-else"
    assert mismatch["presented"] == "system:serviceaccount:payments:checkout"
    assert "subject" in verification.summary
    assert AuditEvent.objects.filter(action="identity_request.verification_failed").exists()


def test_an_issuer_differing_only_by_the_trailing_slash_is_caught_and_explained(
    sandbox: Sandbox, ready_request: IdentityRequest
) -> None:
    alter_fic(sandbox, ready_request, issuer=sandbox.aks["issuer_url"].rstrip("/"))

    verification = identity_request_verify(identity_request_id=ready_request.pk)

    assert verification is not None
    assert verification.outcome == VerificationOutcome.FAILED
    [mismatch] = verification.mismatches
    assert mismatch["field"] == "issuer"
    assert mismatch["presented"] == sandbox.aks["issuer_url"]
    assert "trailing slash" in mismatch["explanation"]


def test_a_new_fic_still_propagating_is_reported_as_propagating_then_works(
    sandbox: Sandbox, ready_request: IdentityRequest
) -> None:
    sandbox.emulator.config(fic_propagation_seconds=600)
    first = identity_request_verify(identity_request_id=ready_request.pk)
    assert first is not None
    assert first.outcome == VerificationOutcome.PROPAGATING
    assert not AuditEvent.objects.filter(action__startswith="identity_request.verification_")

    sandbox.emulator.config(fic_propagation_seconds=0)
    second = identity_request_verify(identity_request_id=ready_request.pk, verification_id=first.pk)

    assert second is not None
    assert second.pk == first.pk
    assert second.outcome == VerificationOutcome.WORKS
    assert second.attempts == 2


def test_a_missing_service_account_is_explained(
    sandbox: Sandbox, ready_request: IdentityRequest
) -> None:
    Cluster.objects.filter(pk=sandbox.cluster.pk).update(apply_service_account=False)

    verification = identity_request_verify(identity_request_id=ready_request.pk)

    assert verification is not None
    assert verification.outcome == VerificationOutcome.FAILED
    assert verification.error_code == "ServiceAccountNotFound"
    assert "payments/checkout" in verification.summary


def test_a_token_endpoint_that_never_answers_is_reported_not_raised(
    sandbox: Sandbox, ready_request: IdentityRequest, settings: Any
) -> None:
    """Entra silent on the token exchange: the verification ends, bounded by the HTTP read
    timeout, saying the exchange could not be made, rather than crashing the task and leaving
    the request's verification unanswered."""
    settings.AZURE_HTTP_READ_TIMEOUT = 1
    sandbox.emulator.config(
        fault_rate_timeout=1.0, fault_ops=["entra.token.assertion"], fault_timeout_seconds=30
    )

    verification = identity_request_verify(identity_request_id=ready_request.pk)

    assert verification is not None
    # Not "failed": nothing was learned about the federation, the exchange never happened.
    assert verification.outcome == VerificationOutcome.INCONCLUSIVE
    assert verification.error_code == "TokenEndpointUnreachable"
    assert "Could not reach Entra ID's token endpoint" in verification.summary
    assert verification.mismatches == []  # nothing was compared
    assert AuditEvent.objects.filter(action="identity_request.verification_inconclusive").exists()
    assert not AuditEvent.objects.filter(action="identity_request.verification_failed").exists()


# Every "no matching federated identity record" form Entra answers today (AZURE-FACTS §8),
# and the older generic one.
NOT_FOUND_CODES = [700211, 700213, 7002138, 70021]


def verify_until_settled(identity_request: IdentityRequest, *, timeout: float = 30) -> list[Any]:
    """Run verification the way the task does (again while propagating) until it settles."""
    attempts: list[Any] = []
    verification_id = None
    deadline = time.monotonic() + timeout
    while True:
        verification = identity_request_verify(
            identity_request_id=identity_request.pk, verification_id=verification_id
        )
        assert verification is not None
        attempts.append((verification.outcome, verification.error_code))
        if verification.outcome != VerificationOutcome.PROPAGATING:
            return [*attempts, verification]
        assert time.monotonic() < deadline, attempts
        verification_id = verification.pk
        time.sleep(0.5)


@pytest.mark.parametrize("code", NOT_FOUND_CODES)
def test_a_credential_visible_after_n_seconds_inside_the_window_ends_working(
    sandbox: Sandbox, ready_request: IdentityRequest, settings: Any, code: int
) -> None:
    """Entra answers the new credential with any "not found" form for N seconds, then knows it:
    the portal keeps checking and ends with "works" (issue 19: it used to record failed)."""
    settings.VERIFY_PROPAGATION_WINDOW_SECONDS = 120
    sandbox.emulator.config(fic_propagation_seconds=3, fic_propagation_error_code=code)

    *attempts, final = verify_until_settled(ready_request)

    assert attempts[0] == (VerificationOutcome.PROPAGATING, f"AADSTS{code}")
    assert final.outcome == VerificationOutcome.WORKS, final.summary
    assert final.attempts == len(attempts)
    assert not AuditEvent.objects.filter(action="identity_request.verification_failed").exists()


@pytest.mark.parametrize(
    ("code", "fields"),
    [
        (700211, ["issuer"]),
        (700213, ["subject"]),
        (7002138, ["subject"]),
        (70021, ["issuer", "subject"]),
    ],
)
def test_a_credential_still_unknown_after_the_window_fails_naming_the_string_to_compare(
    sandbox: Sandbox, ready_request: IdentityRequest, settings: Any, code: int, fields: list[str]
) -> None:
    settings.VERIFY_PROPAGATION_WINDOW_SECONDS = 0
    sandbox.emulator.config(fic_propagation_seconds=600, fic_propagation_error_code=code)

    verification = identity_request_verify(identity_request_id=ready_request.pk)

    assert verification is not None
    assert verification.outcome == VerificationOutcome.FAILED
    assert verification.error_code == f"AADSTS{code}"
    assert [m["field"] for m in verification.mismatches] == fields
    by_field = {m["field"]: m for m in verification.mismatches}
    if "issuer" in by_field:
        assert by_field["issuer"]["expected"] == sandbox.aks["issuer_url"]
        assert by_field["issuer"]["presented"] == sandbox.aks["issuer_url"]
        assert sandbox.aks["issuer_url"] in verification.summary
    if "subject" in by_field:
        assert by_field["subject"]["expected"] == "system:serviceaccount:payments:checkout"
        assert "system:serviceaccount:payments:checkout" in verification.summary


def test_a_subject_differing_only_in_case_is_aadsts7002138_and_says_so(
    sandbox: Sandbox, ready_request: IdentityRequest
) -> None:
    alter_fic(sandbox, ready_request, subject="system:serviceaccount:Payments:checkout")

    verification = identity_request_verify(identity_request_id=ready_request.pk)

    assert verification is not None
    assert verification.outcome == VerificationOutcome.FAILED
    assert verification.error_code == "AADSTS7002138"
    [mismatch] = verification.mismatches
    assert "case" in mismatch["explanation"]


def test_entra_failing_the_exchange_is_inconclusive_not_a_failed_federation(
    sandbox: Sandbox, ready_request: IdentityRequest
) -> None:
    """Entra answers 500 server_error (AADSTS90033, "A transient error has occurred") to every
    exchange: it decided nothing about the credential, so the check is inconclusive."""
    sandbox.emulator.config(fault_rate_500=1.0, fault_ops=["entra.token.assertion"])

    verification = identity_request_verify(identity_request_id=ready_request.pk)

    assert verification is not None
    assert verification.outcome == VerificationOutcome.INCONCLUSIVE
    assert verification.error_code == "TokenEndpointBusy"
    assert "AADSTS90033" in verification.summary
    assert verification.mismatches == []


def test_a_cluster_that_never_answers_the_token_request_is_inconclusive_within_the_timeout(
    sandbox: Sandbox, ready_request: IdentityRequest, settings: Any
) -> None:
    """The kubernetes client waits forever unless told: an API server that takes the connection
    and never answers would hold the worker until Celery's hard limit. Bounded by the read
    timeout, and inconclusive: nothing was learned about the federation."""
    settings.AZURE_HTTP_READ_TIMEOUT = 1
    sandbox.emulator.config(
        fault_rate_timeout=1.0, fault_ops=["k8s.token"], fault_timeout_seconds=60
    )
    started = time.monotonic()

    verification = identity_request_verify(identity_request_id=ready_request.pk)

    assert time.monotonic() - started < 30
    assert verification is not None
    assert verification.outcome == VerificationOutcome.INCONCLUSIVE
    assert verification.error_code == "ClusterUnreachable"
