"""/metrics as Prometheus scrapes it: refused without the token, parsed with the token; the
worker pod's exporter over real HTTP; multiprocess mode adding up real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import WorkerHeartbeat
from identities.models import RequestKind, RequestStatus
from portal.celery import app as celery_app
from portal.metrics import redis_queue_lists
from portal.metrics_server import serve_worker_metrics
from tests.support.metrics import METRICS_TOKEN, parse, scrape, total, value
from tests.support.services import REPO_ROOT, free_port, run_manage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def metrics_token() -> Iterator[None]:
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        yield


def test_metrics_do_not_exist_without_a_configured_token(client: Client) -> None:
    with override_settings(METRICS_TOKEN=""):
        response = client.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token-0123456789abcdef",
        f"Basic {METRICS_TOKEN}",
        f"Bearer {METRICS_TOKEN}x",
    ],
)
def test_metrics_refuse_a_missing_or_wrong_token(client: Client, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"portal_" not in response.content


def test_metrics_refuse_an_api_users_session(client: Client, admin_user: object) -> None:
    """Being signed in (even as an admin) is not the scraper's token."""
    client.force_login(admin_user)  # type: ignore[arg-type]
    assert client.get("/metrics").status_code == 401


def test_metrics_parse_and_describe_the_portals_state(client: Client) -> None:
    samples = scrape(client)
    for part in ("requests", "identities", "heartbeat", "audit_chain", "queue"):
        assert value(samples, "portal_state_up", part=part) == 1.0, part
    # Every kind x status is a series, zero or not, so a rule never sees one appear from nowhere.
    for kind in RequestKind.values:
        for status in RequestStatus.values:
            assert ("portal_identity_requests", (("kind", kind), ("status", status))) in samples
    assert total(samples, "portal_audit_chain_check_verdict") in {0.0, 1.0}


def test_queue_depth_and_oldest_message_age_come_from_the_broker(client: Client) -> None:
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    with override_settings(CELERY_TASK_DEFAULT_QUEUE=queue):
        assert value(scrape(client), "portal_queue_messages", queue=queue) == 0.0
        for _ in range(2):
            celery_app.send_task("portal.tasks.heartbeat", queue=queue)
        time.sleep(1.1)
        try:
            samples = scrape(client)
        finally:
            _purge(queue)
    assert value(samples, "portal_queue_messages", queue=queue) == 2.0
    age = value(samples, "portal_queue_oldest_message_age_seconds", queue=queue)
    assert 1.0 <= age < 60.0


def _purge(queue: str) -> None:
    if celery_app.conf.broker_url.startswith("redis"):
        redis.Redis.from_url(celery_app.conf.broker_url).delete(*redis_queue_lists(queue))
    else:
        folder = Path(celery_app.conf.broker_transport_options["data_folder_in"])
        for path in folder.glob(f"*.{queue}.msg"):
            path.unlink()


def test_the_heartbeat_age_is_the_newest_heartbeats(client: Client) -> None:

    WorkerHeartbeat.objects.create(hostname="old", seen_at=timezone.now() - timedelta(hours=1))
    WorkerHeartbeat.objects.create(hostname="new", seen_at=timezone.now() - timedelta(seconds=30))
    age = value(scrape(client), "portal_worker_heartbeat_age_seconds")
    assert 30.0 <= age < 90.0


def _get(url: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 (http:// to our own server)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (our own server)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_worker_exporter_serves_over_http_only_with_the_token() -> None:
    server = serve_worker_metrics(port=free_port(), token=METRICS_TOKEN, host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert _get(f"{url}/metrics", None)[0] == 401
        assert _get(f"{url}/metrics", "wrong-token-0123456789abcdef")[0] == 401
        assert _get(f"{url}/other", METRICS_TOKEN)[0] == 404
        status, body = _get(f"{url}/metrics", METRICS_TOKEN)
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200
    assert any(name.startswith("process_") or name.startswith("python_") for name, _ in parse(body))


COUNT_ONE_RETRY = """
from provisioning import metrics
metrics.retry_recorded(reason="throttled", code="TooManyRequests", wait=1.5)
"""
EXPOSE = """
import sys
from portal.metrics_server import exposition, process_registry
sys.stdout.write(exposition(process_registry()).decode())
"""


def test_multiprocess_mode_adds_up_the_processes_of_a_pod(tmp_path: Path) -> None:
    """gunicorn workers and Celery pool children each write their own files; the exporter
    reads them all (three real processes here: two that count, one that serves)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", COUNT_ONE_RETRY], env=env, cwd=REPO_ROOT, check=True)
    served = subprocess.run(
        [sys.executable, "-c", EXPOSE],
        env=env,
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    samples = parse(served)
    assert (
        value(samples, "portal_azure_retries_total", reason="throttled", code="TooManyRequests")
        == 2.0
    )
    assert value(samples, "portal_azure_retry_wait_seconds_total", reason="throttled") == 3.0


def test_a_short_metrics_token_is_a_clear_settings_error() -> None:
    result = run_manage("check", DEBUG="1", METRICS_TOKEN="short")
    assert result.returncode != 0
    assert "METRICS_TOKEN must be at least 24 characters" in result.stderr
