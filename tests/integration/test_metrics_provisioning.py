"""A real provisioning run against the emulator moves the Azure-call counters /metrics serves.

The engine runs in the test process (as in test_provisioning.py); its SDK clients talk HTTPS to
the emulator and every ARM response passes azure-core's hook, so the counts read back through
/metrics are those of real calls, compared here with the emulator's own request log.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client, override_settings

from identities.models import RequestStatus
from identities.policy import RoleDraft
from provisioning.reconcile import reconcile_request
from tests.support.metrics import METRICS_TOKEN, scrape, total, value
from tests.support.people import SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments/providers/Microsoft.KeyVault/vaults"
)


@pytest.fixture(autouse=True)
def metrics_token() -> Iterator[None]:
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        yield


def roles(count: int) -> tuple[RoleDraft, ...]:
    return tuple(
        RoleDraft("Key Vault Secrets User", f"{VAULT}/kv-metrics-{n}") for n in range(count)
    )


def test_a_provisioning_run_moves_the_azure_call_counters(
    client: Client, sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    identity_request = approved_request(roles=roles(2))
    before = scrape(client)
    log_start = len(sandbox.emulator.requests())

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # Exactly the writes the emulator served: one identity, one FIC, two role assignments.
    served = [
        e for e in sandbox.emulator.requests(log_start) if e["path"].startswith("/subscriptions/")
    ]
    puts = [e for e in served if e["method"] == "PUT"]
    assert moved("portal_azure_requests_total", operation="userAssignedIdentities.put") == 1
    assert moved("portal_azure_requests_total", operation="federatedIdentityCredentials.put") == 1
    assert moved("portal_azure_requests_total", operation="roleAssignments.put") == 2
    assert moved("portal_azure_requests_total", code="") == len(served)
    assert len(puts) == 4
    assert moved("portal_azure_request_duration_seconds_count") == len(served)
    assert moved("portal_provisioning_steps_total", step="role", outcome="done") == 2
    assert moved("portal_provisioning_steps_total", step="identity", outcome="done") == 1
    assert moved("portal_approval_to_ready_seconds_count", kind="new") == 1
    assert value(after, "portal_identity_requests", kind="new", status="ready") >= 1


def test_throttling_shows_as_429s_retries_and_waits(
    client: Client, sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    identity_request = approved_request(roles=roles(4))
    sandbox.emulator.config(write_bucket_capacity=2, write_bucket_refill_per_second=4)
    before = scrape(client)
    log_start = len(sandbox.emulator.requests())

    reconcile_request(identity_request.pk)

    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error
    after = scrape(client)
    throttled = sum(
        1
        for e in sandbox.emulator.requests(log_start)
        if e["status"] == 429 and e["path"].startswith("/subscriptions/")
    )
    assert throttled > 0  # the emulator really turned writes away
    moved_429 = total(after, "portal_azure_requests_total", status="429") - total(
        before, "portal_azure_requests_total", status="429"
    )
    assert moved_429 == throttled
    retries = total(after, "portal_azure_retries_total", reason="throttled") - total(
        before, "portal_azure_retries_total", reason="throttled"
    )
    assert retries == throttled
    waited = total(after, "portal_azure_retry_wait_seconds_total", reason="throttled") - total(
        before, "portal_azure_retry_wait_seconds_total", reason="throttled"
    )
    assert waited > 0
