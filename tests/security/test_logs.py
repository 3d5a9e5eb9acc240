"""No token, secret or client assertion reaches a log: the whole session's logs, in-process and
from the worker and emulator processes, are captured (tests/support/log_capture.py) and scanned
by the last test of the session, which also checks that the capture saw enough to mean something.

Canaries make the scan able to fail: this process logs credentials the careless ways a log line
might, and a worker is handed a task whose arguments carry them and fails on them (Celery then
logs the arguments and the traceback). Redaction must catch every one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from accounts.tokens import token_generate
from identities.models import IdentityRequest, RequestStatus
from provisioning.models import Verification, VerificationOutcome
from provisioning.tasks import repair_identity
from tests.support.log_capture import SESSION_LOG, register_secret, run_last, scan, session_leaks
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import ManagedProcess, wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = pytest.mark.security

CANARY_MARK = "log-canary"
WORKER_CANARY_MARK = "raised unexpected"
# The canary tests that ran in this process (a subset run, or another xdist worker, may not
# have run them); the whole-session scan asserts what each one makes true only if it ran here.
CANARIES_RUN: set[str] = set()


def fake_jwt() -> str:
    def part(claims: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    header = part({"alg": "RS256", "typ": "JWT"})
    body = part({"sub": "system:serviceaccount:payments:checkout", "aud": "canary"})
    return f"{header}.{body}.{secrets.token_urlsafe(32)}"


def test_the_scanner_finds_every_kind_of_secret() -> None:
    token, jwt, secret = token_generate(), fake_jwt(), secrets.token_urlsafe(24)
    lines = [
        ("log", 1, f"GET /api/v1/me/ with {token}"),
        ("log", 2, f"client_assertion={jwt}"),
        ("log", 3, f"connected with {secret}"),
        ("log", 4, "-----BEGIN PRIVATE KEY-----"),
        ("log", 5, "Authorization: Bearer [REDACTED] client_secret=[REDACTED] wip_3xT9kQ2m…"),
    ]

    leaks = scan(lines, {secret: "a client secret"})

    assert [(leak.line, leak.kind) for leak in leaks] == [
        (1, "API token"),
        (2, "JWT"),
        (3, "a client secret"),
        (4, "private key"),
    ]
    assert all(token not in str(leak) and jwt not in str(leak) for leak in leaks)


def test_careless_log_lines_are_redacted_before_any_handler_writes_them() -> None:
    token, jwt, secret = token_generate(), fake_jwt(), "canary-" + secrets.token_urlsafe(24)
    register_secret(secret, "the canary client secret")
    first = len(SESSION_LOG.lines)

    logging.getLogger("accounts.authentication").warning(
        "%s: refused Authorization: Bearer %s", CANARY_MARK, token
    )
    logging.getLogger("provisioning.verification").error(
        "%s: exchange failed for client_assertion=%s", CANARY_MARK, jwt
    )
    logging.getLogger("provisioning.gateway").info(
        "%s: token request {'client_secret': '%s'}", CANARY_MARK, secret
    )
    try:
        raise RuntimeError(f"the pipeline sent {token} with assertion {jwt}")
    except RuntimeError:
        logging.getLogger("api.problems").exception("%s: unhandled", CANARY_MARK)

    written = SESSION_LOG.lines[first:]
    assert sum(CANARY_MARK in line for line in written) == 4, written
    CANARIES_RUN.add("in-process")
    assert any("Traceback" in line for line in written), "the traceback was captured"
    assert sum(line.count("[REDACTED]") for line in written) >= 5
    leaks = scan((("canary", n, line) for n, line in enumerate(written, 1)), {secret: "canary"})
    assert leaks == [], [str(leak) for leak in leaks]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_logs_no_secret_while_provisioning_verifying_and_failing(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    """A worker at DEBUG provisions a request, verifies it (cluster token, client assertion,
    access tokens all pass through it), then gets a task whose argument is a token and a JWT."""
    # Redis when the suite has it (CI), else the embedded broker: either way a real worker.
    broker = make_broker("redis" if os.environ.get("REDIS_URL") else "embedded", tmp_path)
    use_broker(broker)
    worker = start_worker(broker, concurrency=1, LOG_LEVEL="DEBUG", **sandbox.worker_env)
    identity_request = approved_request()

    def verified() -> bool:
        status = IdentityRequest.objects.get(pk=identity_request.pk).status
        return (
            status == RequestStatus.FAILED
            or Verification.objects.filter(identity_request=identity_request).exists()
        )

    assert wait_until(verified, timeout=90, interval=0.25), worker.log_tail()
    verification = Verification.objects.get(identity_request=identity_request)
    assert verification.outcome == VerificationOutcome.WORKS, verification.summary

    broker.send(repair_identity, f"{token_generate()} {fake_jwt()}")
    assert wait_until(lambda: WORKER_CANARY_MARK in worker.log_path.read_text(), timeout=60), (
        worker.log_tail()
    )
    worker.stop()

    assert_worker_log_is_real(worker)
    leaks = scan(
        ((worker.name, n, line) for n, line in enumerate(worker.log_path.read_text().splitlines())),
        SESSION_LOG.secrets,
    )
    assert leaks == [], [str(leak) for leak in leaks]
    CANARIES_RUN.add("worker")


def assert_worker_log_is_real(worker: ManagedProcess | Path) -> None:
    path = worker.log_path if isinstance(worker, ManagedProcess) else worker
    text = path.read_text(errors="replace")
    assert len(text.splitlines()) >= 50, f"a worker log of {len(text.splitlines())} lines"
    assert "verification of request" in text, "the worker logged its own work"
    assert WORKER_CANARY_MARK in text and "Traceback" in text, "the canary task failed, logged"
    assert "[REDACTED]" in text, "the worker redacted the canary"


@run_last
def test_no_log_line_of_the_whole_session_holds_a_secret() -> None:
    """The session's last test (this process's, under xdist). The capture must have been on all
    along and, where the canary tests ran in this process, have seen what they logged (this
    process's lines with the canaries, a worker's log), so that an empty scan means something;
    then nothing it saw may hold a secret. The session-end backstop (tests.support.log_capture)
    scans again, whatever was selected."""
    assert SESSION_LOG.detached == [], "tests that took the capture handler off the root logger"
    if "in-process" in CANARIES_RUN:
        assert len(SESSION_LOG.lines) >= 100, f"only {len(SESSION_LOG.lines)} lines captured"
        assert sum(CANARY_MARK in line for line in SESSION_LOG.lines) >= 4, (
            "the in-process canaries were logged but not captured"
        )
        assert len(SESSION_LOG.secrets) >= 3, SESSION_LOG.secrets.values()
    if "worker" in CANARIES_RUN:
        workers = [
            path for path, name in SESSION_LOG.child_logs.items() if name.startswith("worker")
        ]
        assert any(
            WORKER_CANARY_MARK in path.read_text(errors="replace")
            for path in workers
            if path.exists()
        ), "the worker canary ran but its log was not registered with the capture"
    # How real the canary worker's log was is asserted by its own test, right after it stopped.

    leaks = session_leaks()

    assert leaks == [], "\n".join(str(leak) for leak in leaks[:50])
