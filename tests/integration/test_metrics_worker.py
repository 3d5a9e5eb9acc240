"""A real Celery worker (prefork pool, multiprocess mode) serves what its pool children counted
on its own metrics port, behind the token: the Azure calls of a provisioning run it did."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from identities.models import IdentityRequest, RequestStatus
from identities.policy import RoleDraft
from tests.support.metrics import METRICS_TOKEN, Samples, parse, total
from tests.support.people import SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import free_port, wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def get(url: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 (http:// to the worker we started)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def test_a_worker_serves_its_pool_childrens_azure_calls_behind_the_token(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    broker = make_broker("embedded", tmp_path)
    use_broker(broker)
    port = free_port()
    worker = start_worker(
        broker,
        **sandbox.worker_env,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        METRICS_TOKEN=METRICS_TOKEN,
        WORKER_METRICS_PORT=str(port),
    )
    url = f"http://127.0.0.1:{port}/metrics"
    assert wait_until(lambda: get(url, None)[0] == 401, timeout=60, interval=0.25), (
        worker.log_tail()
    )
    assert get(url, "wrong-token-0123456789abcdef")[0] == 401

    scope = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
        "/providers/Microsoft.KeyVault/vaults/kv-worker"
    )
    identity_request = approved_request(roles=(RoleDraft("Key Vault Secrets User", scope),))
    assert wait_until(
        lambda: IdentityRequest.objects.filter(
            pk=identity_request.pk, status__in=[RequestStatus.READY, RequestStatus.FAILED]
        ).exists(),
        timeout=90,
        interval=0.25,
    ), worker.log_tail()
    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error

    def scraped() -> Samples:
        status, body = get(url, METRICS_TOKEN)
        assert status == 200, body[:300]
        return parse(body)

    # The verification task follows provisioning; both ran in pool children, not in the process
    # that serves the port.
    assert wait_until(
        lambda: total(scraped(), "portal_verifications_total", outcome="works") == 1,
        timeout=60,
        interval=0.5,
    ), worker.log_tail()
    samples = scraped()
    assert (
        total(samples, "portal_azure_requests_total", operation="userAssignedIdentities.put") == 1
    )
    assert total(samples, "portal_azure_requests_total", operation="roleAssignments.put") == 1
    assert total(samples, "portal_approval_to_ready_seconds_count", kind="new") == 1
    assert (
        total(
            samples,
            "portal_celery_tasks_total",
            task="provisioning.provision_identity_request",
            state="SUCCESS",
        )
        == 1
    )
    assert any(Path(tmp_path / "metrics").iterdir()), "the pool children wrote their values"
