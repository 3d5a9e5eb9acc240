"""The chaos soak: many requests through the real API while everything that can fail, fails.

`run_soak` files `plan.requests` requests through the REST API (the real DRF views, in this
process, with API tokens) and approves each one, keeping a few in flight at a time. Several real
Celery worker processes (forked from a zygote, tests/support/worker_zygote.py) provision them
against the emulator over HTTPS, with a Redis of the run's own (tests/support/redis_server.py) and
PostgreSQL behind a TCP proxy (tests/support/tcp_proxy.py); a celery beat runs the sweeper and the
heartbeat. As the run progresses the chaos schedule, drawn from the seed, fires:

- kill -9 of a random worker (its whole process group), and a new one in its place;
- the Redis server killed and restarted empty (queued messages, locks, the cache: gone);
- every PostgreSQL connection of the workers cut, and new ones refused, for a few seconds;
- a 429 storm (a small ARM write bucket) and a 500 storm (a share of all calls), each for a
  stretch of the run.

Then the invariants: every request terminal (ready, or failed with a last_error naming the
operation and the Azure code), none lost, no step left running, Azure exactly as the database
says (tests/faults/consistency.py: nothing duplicated, nothing orphaned), the audit chain
verifies, and no worker is wedged (the beat's heartbeat is fresh, so is each live worker's
liveness file). `SOAK_SEED` replays a run's choices, `SOAK_REQUESTS` changes its size.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.test import Client
from django.utils import timezone

from accounts.models import WorkerHeartbeat
from accounts.tokens import api_token_create
from identities.audit import audit_verify_chain
from identities.models import AuditEvent, IdentityRequest, RequestStatus
from provisioning.models import ProvisioningStep, StepStatus
from tests.faults.consistency import azure_disagreements
from tests.faults.helpers import FINAL, statuses
from tests.faults.soak_figures import SoakFigures, SoakPlan
from tests.support.people import SUBSCRIPTION
from tests.support.redis_server import RedisServer
from tests.support.sandbox import Sandbox
from tests.support.services import ManagedProcess, wait_until
from tests.support.tcp_proxy import TcpProxy
from tests.support.worker_zygote import ForkedWorker, WorkerZygote
from tests.support.workers import Broker

OPERATIONS = ("create managed identity", "create federated credential", "assign role")
AZURE_CODE = re.compile(r"\(Azure code (\w+)")
LIVENESS_INTERVAL_SECONDS = 1
HEARTBEAT_INTERVAL_SECONDS = 2

# The sweeper rescues what a kill or the Redis restart dropped within seconds (the defaults,
# minutes, would make the run wait for it); a re-enqueue of a request still in the works only
# runs the idempotent engine twice.
WORKER_ENV = {
    "SWEEPER_APPROVED_AFTER_SECONDS": "5",
    "SWEEPER_STALE_SECONDS": "5",
    "SWEEPER_INTERVAL_SECONDS": "1",
    "VERIFY_AFTER_PROVISIONING": "0",
    "HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_INTERVAL_SECONDS),
    "WORKER_LIVENESS_INTERVAL_SECONDS": str(LIVENESS_INTERVAL_SECONDS),
    "PROVISIONING_DATABASE_BACKOFF_MAX_SECONDS": "5",
}


@dataclass
class Event:
    """One chaos action, due once `at` of the requests are terminal and `ready()` (a storm
    ends only once it was answered a few times, so a short run cannot miss it)."""

    at: float
    name: str
    action: Callable[[], str]
    ready: Callable[[], bool] = lambda: True


class AzureAnswers:
    """The emulator's request log, read as it grows: answers counted by HTTP status."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.emulator = sandbox.emulator
        self.offset = len(self.emulator.requests())
        self.by_status: Counter[int | None] = Counter()
        self.calls = 0

    def update(self) -> Counter[int | None]:
        entries = self.emulator.requests(self.offset)
        self.offset += len(entries)
        self.calls += len(entries)
        self.by_status.update(entry["status"] for entry in entries)
        return self.by_status


class Workers:
    """The run's worker processes: each with a liveness file of its own."""

    def __init__(
        self, zygote: WorkerZygote, broker: Broker, folder: Path, concurrency: int
    ) -> None:
        self.zygote = zygote
        self.broker = broker
        self.folder = folder
        self.concurrency = concurrency
        self.live: list[tuple[ForkedWorker, Path]] = []

    def start(self) -> ForkedWorker:
        liveness = self.folder / f"alive-{len(self.zygote.started)}"
        worker = self.zygote.fork(
            self.broker,
            concurrency=self.concurrency,
            settings={"WORKER_LIVENESS_FILE": str(liveness)},
        )
        self.live.append((worker, liveness))
        return worker

    def kill(self, rng: random.Random) -> str:
        worker, _ = self.live.pop(rng.randrange(len(self.live)))
        # A worker just forked may not lead its process group yet (kill() signals the group):
        # let it reach "ready" first, a second or two.
        wait_until(lambda: " ready." in worker.log_tail(200), timeout=30, interval=0.1)
        worker.kill()
        replacement = self.start()
        return f"kill -9 {worker.name} (pid {worker.pid}), started {replacement.name}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(f"--- {w.name}\n{w.log_tail(lines)}" for w, _ in self.live)

    def logs(self) -> str:
        return "\n".join(
            w.log_path.read_text(errors="replace")
            for w in self.zygote.started
            if w.log_path.exists()
        )


class Api:
    """The REST API as a pipeline calls it: bearer tokens, JSON, problem documents on errors."""

    def __init__(self, requester: Any, approver: Any) -> None:
        _, self.filer = api_token_create(
            user=requester, name="soak-ci", scopes=["request", "read"], expires_at=None
        )
        _, self.security = api_token_create(
            user=approver, name="soak-security", scopes=["approve"], expires_at=None
        )
        self.client = Client()

    def _post(self, path: str, token: str, body: dict[str, Any], expect: int) -> dict[str, Any]:
        response = self.client.post(
            path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert response.status_code == expect, (path, response.status_code, response.content)
        result: dict[str, Any] = response.json()
        return result

    def file_and_approve(self, number: int, roles: int) -> int:
        body = {
            "app_name": f"soak{number}",
            "team": "payments",
            "cluster": "aks-test",
            "namespace": "payments",
            "service_account": f"soak{number}",
            "roles": [
                {"role": "Key Vault Secrets User", "scope": vault_scope(number, n)}
                for n in range(roles)
            ],
            "tags": {"costCentre": "cc-4711", "environment": "dev"},
            "justification": "Chaos soak: provisioning under worker, broker and database faults.",
        }
        pk = int(self._post("/api/v1/identity-requests/", self.filer, body, 201)["id"])
        self._post(f"/api/v1/identity-requests/{pk}/approve/", self.security, {}, 200)
        return pk


def vault_scope(number: int, n: int) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
        f"/providers/Microsoft.KeyVault/vaults/kv-soak{number}-{n}"
    )


def run_soak(
    *,
    plan: SoakPlan,
    sandbox: Sandbox,
    api: Api,
    workers: Workers,
    beat: ManagedProcess,
    redis: RedisServer,
    proxy: TcpProxy,
) -> SoakFigures:
    """Run the plan, then check the invariants; the figures carry the problems found."""
    rng = random.Random(plan.seed)
    figures = SoakFigures(plan=plan, started_at=timezone.now().strftime("%Y-%m-%d %H:%M UTC"))
    print(f"soak: SOAK_SEED={plan.seed} SOAK_REQUESTS={plan.requests}")
    emulator = sandbox.emulator
    emulator.config(latency_ms=plan.latency_ms, fault_seed=rng.randrange(2**31))
    sandbox.emulator.register_resources(
        *[vault_scope(number, n) for number in range(plan.requests) for n in range(3)]
    )
    figures.load_start = figures.load_peak = os.getloadavg()[0]
    began = time.monotonic()
    for _ in range(plan.workers):
        workers.start()

    def kill() -> str:
        figures.kills += 1
        return workers.kill(rng)

    def restart_redis() -> str:
        redis.kill()
        down = rng.uniform(1, 3)
        time.sleep(down)
        redis.start()
        figures.redis_restarts += 1
        return f"Redis killed, back empty after {down:.1f}s"

    def cut_database() -> str:
        proxy.refuse()
        down = rng.uniform(2, 5)
        time.sleep(down)
        proxy.restore()
        figures.database_cuts += 1
        return f"PostgreSQL cut for the workers for {down:.1f}s"

    answers = AzureAnswers(sandbox)
    hits_at_start: dict[int, int] = {}

    def storm(status: int, name: str, **knobs: Any) -> Callable[[], str]:
        def start() -> str:
            hits_at_start[status] = answers.update()[status]
            emulator.config(**knobs)
            figures.storms.append(name)
            return f"storm on: {name}"

        return start

    def calm(status: int, **knobs: Any) -> Callable[[], str]:
        def stop() -> str:
            emulator.config(**knobs)
            return f"storm off: {answers.by_status[status] - hits_at_start[status]} x {status}"

        return stop

    def hit(status: int, times: int) -> Callable[[], bool]:
        return lambda: answers.by_status[status] - hits_at_start.get(status, 0) >= times

    # Storms too start while requests are still being filed, so that calls enough follow them:
    # a 500 storm due at 50 % of 12 requests once came when the last runs had made their calls
    # (0 of 116 answered 500; the range was 30-60 %).
    storm_429, storm_500 = rng.uniform(0.05, 0.45), rng.uniform(0.1, 0.4)
    events = sorted(
        # Kills while requests are still being filed (under half terminal): later, the last
        # in-flight requests can all end between two polls and a due kill never fires (seen in
        # CI once the engine got faster; the range was 5-85 %).
        [Event(rng.uniform(0.05, 0.45), "kill", kill) for _ in range(plan.kills)]
        + [
            Event(rng.uniform(0.15, 0.7), "redis", restart_redis),
            Event(rng.uniform(0.15, 0.7), "postgres", cut_database),
            Event(
                storm_429,
                "429",
                storm(
                    429,
                    "429 (ARM write bucket of 2, refilled at 1/s)",
                    write_bucket_capacity=2,
                    write_bucket_refill_per_second=1,
                ),
            ),
            Event(
                storm_429 + 0.2,
                "429 off",
                calm(429, write_bucket_capacity=None, write_bucket_refill_per_second=None),
                ready=hit(429, 5),
            ),
            Event(storm_500, "500", storm(500, "500 (25% of all calls)", fault_rate_500=0.25)),
            Event(storm_500 + 0.2, "500 off", calm(500, fault_rate_500=0.0), ready=hit(500, 5)),
        ],
        key=lambda event: event.at,
    )

    pks: list[int] = []
    deadline = began + plan.budget_seconds
    while time.monotonic() < deadline:
        current = statuses(pks)
        terminal = sum(status in FINAL for status in current.values())
        if len(pks) == plan.requests and terminal == plan.requests:
            break
        progress = terminal / plan.requests
        answers.update()
        for event in [e for e in events if e.at <= progress and e.ready()]:
            events.remove(event)
            figures.events.append(f"{progress:.0%}: {event.action()}")
        while len(pks) < plan.requests and len(pks) - terminal < plan.in_flight:
            pks.append(api.file_and_approve(len(pks), rng.randint(1, 3)))
        figures.load_peak = max(figures.load_peak, os.getloadavg()[0])
        time.sleep(0.25)
    for event in events:  # the run ended before these were due or ready: say so
        figures.events.append(f"never fired: {event.name} at {event.at:.0%}")
        if event.name.endswith(" off"):
            event.action()  # a storm still on would fail the checks' own calls
    figures.duration = time.monotonic() - began
    figures.load_end = os.getloadavg()[0]
    figures.filed = len(pks)
    check_invariants(figures, sandbox, pks, workers, beat, answers)
    return figures


def check_invariants(
    figures: SoakFigures,
    sandbox: Sandbox,
    pks: list[int],
    workers: Workers,
    beat: ManagedProcess,
    answers: AzureAnswers,
) -> None:
    plan = figures.plan
    final = statuses(pks)
    figures.final = dict(Counter(final.values()))
    figures.lost = sorted(
        {pk for pk, status in final.items() if status not in FINAL} | (set(pks) - set(final))
    )
    if figures.filed != plan.requests:
        figures.problems.append(f"only {figures.filed} of {plan.requests} requests were filed")
    if figures.lost:
        figures.problems.append(f"lost (not terminal): {figures.lost}")
    for identity_request in IdentityRequest.objects.filter(pk__in=pks, status=RequestStatus.FAILED):
        error = identity_request.last_error
        figures.failed_errors.append(f"#{identity_request.pk}: {error}")
        if AZURE_CODE.search(error) is None or not any(op in error for op in OPERATIONS):
            figures.problems.append(f"#{identity_request.pk} failed without operation/code")
    running = ProvisioningStep.objects.filter(
        identity_request_id__in=pks, status=StepStatus.RUNNING
    ).count()
    if running:
        figures.problems.append(f"{running} steps left running")

    for problem in azure_disagreements(sandbox):
        if "orphan" in problem or "does not know" in problem:
            figures.orphans.append(problem)
        elif re.search(r"created \d+ times|: \d+ FICs for|^\d+ role assignments", problem):
            figures.duplicates.append(problem)
        else:
            figures.mismatches.append(problem)
    figures.problems += figures.duplicates + figures.orphans + figures.mismatches
    chain = audit_verify_chain()
    if not chain.ok:
        figures.problems.append(f"the audit chain is broken: {chain}")

    answered = answers.update()
    figures.answered_429, figures.answered_500 = answered[429], answered[500]
    figures.arm_and_token_calls = answers.calls
    figures.requeued = AuditEvent.objects.filter(
        identity_request_id__in=pks, action="identity_request.requeued"
    ).count()
    figures.database_retries = workers.logs().count("lost the database")

    # No wedged worker: the heartbeat (beat → any worker → database) and each live worker's
    # own liveness file (its pool ran a job) are fresh now, well after the last fault.
    fresh_after = time.time() + 1
    heartbeat_since = timezone.now() + timedelta(seconds=1)
    beating = wait_until(
        lambda: WorkerHeartbeat.objects.filter(seen_at__gt=heartbeat_since).exists(),
        timeout=10 * HEARTBEAT_INTERVAL_SECONDS,
    )
    if not beating:
        figures.problems.append("no worker heartbeat after the run")
    for worker, liveness in workers.live:

        def alive(path: Path = liveness) -> bool:
            return path.exists() and path.stat().st_mtime > fresh_after

        if not worker.alive() or not wait_until(alive, timeout=15 * LIVENESS_INTERVAL_SECONDS):
            figures.problems.append(f"{worker.name} is wedged or dead: {worker.log_tail(5)}")
    if not beat.alive():
        figures.problems.append(f"celery beat died: {beat.log_tail(5)}")
    if plan.requests and figures.answered_429 == 0:
        figures.problems.append("the 429 storm never hit")
    if plan.requests and figures.answered_500 == 0:
        figures.problems.append("the 500 storm never hit")
