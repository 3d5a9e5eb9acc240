"""examples/pipeline.sh, the README's pipeline script, run as it is (bash + curl + jq) against a
live portal, a real Celery worker and the Azure emulator, so it cannot rot: a first run files,
waits through the approval and provisioning and prints the manifests; a re-run finds what the
first filed; a refusal shows the problem document; an unapproved request times out."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from django.utils import timezone

from accounts.tokens import api_token_create
from identities.models import IdentityRequest, RequestStatus
from identities.services import identity_request_approve, identity_request_reject
from tests.support.people import VAULT_SCOPE
from tests.support.sandbox import Sandbox
from tests.support.services import REPO_ROOT, service_missing, wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

SCRIPT = REPO_ROOT / "examples" / "pipeline.sh"


@pytest.fixture
def run_script(live_server: Any, requester: Any, tmp_path: Path) -> Callable[..., Any]:
    """`run_script(body, **env)` starts the script (a Popen; stdout and stderr captured)."""
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is not installed (apt-get install {tool})")
    _, token = api_token_create(
        user=requester,
        name="pipeline",
        scopes=["read", "request"],
        expires_at=timezone.now() + timedelta(hours=1),
    )

    def start(body: dict[str, Any], **env: str) -> subprocess.Popen[str]:
        body_file = tmp_path / f"{body['service_account']}.json"
        body_file.write_text(json.dumps(body))
        environment = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PORTAL_API": f"{live_server.url}/api/v1",
            "PORTAL_TOKEN": token,
            "PORTAL_WAIT_SECONDS": "5",
            "PORTAL_TIMEOUT_SECONDS": "180",
            **env,
        }
        return subprocess.Popen(
            ["bash", str(SCRIPT), str(body_file)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return start


def request_body(cluster: str, **overrides: Any) -> dict[str, Any]:
    return {
        "app_name": "checkout",
        "team": "payments",
        "cluster": cluster,
        "namespace": "payments",
        "service_account": "checkout",
        "roles": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}],
        "tags": {"costCentre": "cc-4711", "environment": "dev"},
        "justification": "Checkout reads its payment provider secrets from Key Vault.",
        **overrides,
    }


def finish(process: subprocess.Popen[str], timeout: float = 150) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def test_the_script_files_waits_for_approval_and_provisioning_and_prints_the_manifests(
    sandbox: Sandbox,
    catalog: Any,
    approver: Any,
    run_script: Callable[..., subprocess.Popen[str]],
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    broker = make_broker("embedded", tmp_path)
    use_broker(broker)
    worker = start_worker(broker, **sandbox.worker_env)
    body = request_body(sandbox.cluster.name)

    first = run_script(body, CI_PIPELINE_ID="101", IMAGE="registry.example.com/checkout:1.4.2")
    assert wait_until(IdentityRequest.objects.exists, timeout=30), first.stderr
    identity_request = IdentityRequest.objects.get()
    time.sleep(1)  # the script is now long-polling a pending request
    identity_request_approve(identity_request=identity_request, approver=approver)
    code, stdout, stderr = finish(first)

    identity_request.refresh_from_db()
    assert code == 0, f"{stderr}\nworker log:\n{worker.log_tail()}"
    assert identity_request.status == RequestStatus.READY
    documents = [doc for doc in yaml.safe_load_all(stdout) if doc]
    service_account = next(doc for doc in documents if doc["kind"] == "ServiceAccount")
    annotations = service_account["metadata"]["annotations"]
    assert identity_request.identity is not None
    assert annotations["azure.workload.identity/client-id"] == identity_request.identity.client_id
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "registry.example.com/checkout:1.4.2"
    assert f"request {identity_request.pk}: created, pending" in stderr
    assert f"request {identity_request.pk}: ready" in stderr

    # A re-run of the pipeline (a new run id, so a new Idempotency-Key) finds it: no refusal.
    again = run_script(body, CI_PIPELINE_ID="102")
    code, stdout_again, stderr_again = finish(again, timeout=60)
    assert code == 0, stderr_again
    assert f"request {identity_request.pk}: identity_exists, ready" in stderr_again
    assert stdout_again.count("kind: ServiceAccount") == 1
    assert IdentityRequest.objects.count() == 1


def test_a_refusal_exits_2_and_shows_the_problem_field_by_field(
    sandbox: Sandbox, catalog: Any, run_script: Callable[..., subprocess.Popen[str]]
) -> None:
    refused = run_script(request_body(sandbox.cluster.name, namespace="search"))
    code, stdout, stderr = finish(refused, timeout=60)

    assert code == 2
    assert stdout == ""
    assert "HTTP 400" in stderr
    assert "namespace: " in stderr
    assert "[namespace_not_owned]" in stderr
    assert IdentityRequest.objects.count() == 0


def test_a_rejection_exits_3_with_the_reason_and_no_approval_exits_4_at_the_timeout(
    sandbox: Sandbox,
    catalog: Any,
    approver: Any,
    run_script: Callable[..., subprocess.Popen[str]],
) -> None:
    rejected = run_script(request_body(sandbox.cluster.name), PORTAL_TIMEOUT_SECONDS="60")
    assert wait_until(IdentityRequest.objects.exists, timeout=30)
    identity_request_reject(
        identity_request=IdentityRequest.objects.get(),
        approver=approver,
        comment="Use the shared vault.",
    )
    code, _, stderr = finish(rejected, timeout=60)
    assert code == 3, stderr
    assert "is rejected: Use the shared vault." in stderr

    started = time.monotonic()
    waiting = run_script(
        request_body(sandbox.cluster.name, service_account="payroll", app_name="payroll"),
        PORTAL_TIMEOUT_SECONDS="4",
        PORTAL_WAIT_SECONDS="2",
    )
    code, stdout, stderr = finish(waiting, timeout=60)
    assert code == 4, stderr
    assert "still pending after 4s" in stderr or "timed out after 4s" in stderr
    # Each unchanged long-poll says so: a CI log shows the wait is alive.
    assert re.search(r"request \d+: still pending after [0-9]s\n", stderr), stderr
    assert time.monotonic() - started < 20
    assert stdout == ""


def test_missing_configuration_exits_1_with_the_reason(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        service_missing("bash is not installed")
    body_file = tmp_path / "request.json"
    body_file.write_text("{}")
    result = subprocess.run(
        ["bash", str(SCRIPT), str(body_file)],
        env={"PATH": "/usr/bin:/bin", "PORTAL_API": "http://127.0.0.1:9/api/v1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "set PORTAL_TOKEN" in result.stderr


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A portal stand-in for the paths a healthy portal cannot be made to take on demand: the
    first ensure gets a 503, the retry meets its own first attempt still running (409
    idempotency-key-in-use), the third gets the ready request; then the manifests."""

    answers: ClassVar[list[tuple[int, dict[str, Any] | str]]] = []
    seen: ClassVar[list[tuple[str, str, str]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append((self.command, self.path, self.headers.get("Idempotency-Key", "")))
        status, body = self.answers.pop(0)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


def test_the_script_retries_outages_and_its_own_running_attempt_with_the_same_key(
    tmp_path: Path,
) -> None:
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is not installed (apt-get install {tool})")
    problem = "tag:workload-identity-portal,2026:problem:"
    _Flaky.seen = []
    _Flaky.answers = [
        (503, {"type": problem + "service-unavailable", "status": 503, "detail": "db"}),
        (409, {"type": problem + "idempotency-key-in-use", "status": 409, "detail": "running"}),
        (201, {"id": 7, "status": "ready", "outcome": "created"}),
        (200, "apiVersion: v1\nkind: ServiceAccount\n"),
    ]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body_file = tmp_path / "request.json"
    body_file.write_text("{}")
    try:
        result = subprocess.run(
            ["bash", str(SCRIPT), str(body_file)],
            env={
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "PORTAL_API": f"http://127.0.0.1:{server.server_port}/api/v1",
                "PORTAL_TOKEN": "wip_test",
                "PORTAL_TIMEOUT_SECONDS": "60",
                "CI_PIPELINE_ID": "77",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.shutdown()

    assert result.returncode == 0, result.stderr
    assert result.stdout == "apiVersion: v1\nkind: ServiceAccount\n"
    ensures = [seen for seen in _Flaky.seen if seen[0] == "POST"]
    assert [key for _, _, key in ensures] == ["ensure-request-77"] * 3
    assert "HTTP 503" in result.stderr and "HTTP 409" in result.stderr
