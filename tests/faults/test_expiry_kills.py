"""kill -9 of the worker in the middle of expiry sweeps, over and over.

Live identities (provisioned first, in the test process) have their role assignments reach
their end a few at a time; a real celery beat runs the expiry sweep every second and a real
worker process marks them for removal and deletes them from the emulator (with latency). The
test kills the worker's whole process group while removals are under way (a random moment after
the sweep marked them, or just after Azure answered a delete), then starts a new worker; the
next sweep re-sends what the dead worker left and the idempotent delete path finishes it. At the
end no assignment is left `removing`, each identity holds exactly its roles that have not ended,
and Azure equals the database. FAULT_SEED=<seed> replays.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from django.utils import timezone

from identities.models import ChildStatus, Identity, RequestStatus, RoleAssignment
from provisioning.reconcile import reconcile_request
from tests.faults.consistency import azure_disagreements
from tests.faults.helpers import approve_new, fault_seed
from tests.faults.test_worker_kills import SWEEPER_ENV, writes_answered
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import postgres_or_missing, wait_until
from tests.support.worker_zygote import ForkedWorker, ZygoteFactory
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

KILLS_REQUIRED = 10  # kills that interrupted removals under way (the issue asks for ≥ 10)
# 15 waves of 2 for 10 kills: a kill that lands after a wave's removals finished is a miss and
# uses up its wave (CI saw 5 misses in 12 waves with a 2 s delay bound and ran out of roles).
IDENTITIES = 10
ROLES_EACH = 3
PER_WAVE = 2  # role assignments that reach their end together
LATENCY_MS = 150
# A wave's two deletes (150 ms each, in parallel) and their records finish 1.2-1.9 s after the
# sweep marks them on this machine: kills later than that were mostly misses.
MAX_KILL_DELAY = 1.0
ANSWER_WAIT = 4.0  # bound on waiting for a delete's answer before killing anyway
TIME_BUDGET = 400.0
EXPIRY_ENV = {"ACCESS_EXPIRY_SWEEP_SECONDS": "1"}


def removing() -> list[int]:
    return list(
        RoleAssignment.objects.filter(status=ChildStatus.REMOVING).values_list("pk", flat=True)
    )


def live_roles(identity: Identity) -> set[str]:
    return {
        scope.lower()
        for scope in identity.role_assignments.exclude(status=ChildStatus.REMOVED).values_list(
            "scope", flat=True
        )
    }


def azure_roles(sandbox: Sandbox, identity: Identity) -> set[str]:
    return {
        assignment["scope"].lower()
        for assignment in sandbox.arm()["role_assignments"].values()
        if assignment["principal_id"] == identity.principal_id
    }


def test_kill_9_mid_expiry_sweep_leaves_azure_equal_to_the_database(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    worker_zygote: ZygoteFactory,
    start_beat: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    postgres_or_missing()
    seed = fault_seed("expiry kills")
    rng = random.Random(seed)

    identities: list[Identity] = []
    for number in range(IDENTITIES):
        origin = approve_new(approved_request, 200 + number, roles=ROLES_EACH)
        reconcile_request(origin.pk)
        origin.refresh_from_db()
        assert origin.status == RequestStatus.READY, origin.last_error
        identities.append(Identity.objects.get(pk=origin.identity_id))
    live = list(
        RoleAssignment.objects.filter(status=ChildStatus.ACTIVE).values_list("pk", flat=True)
    )
    rng.shuffle(live)

    broker = make_broker("redis", tmp_path)
    use_broker(broker)
    sandbox.emulator.config(latency_ms=LATENCY_MS)
    env = {**sandbox.worker_env, **SWEEPER_ENV, **EXPIRY_ENV}
    start_beat(broker, **env)
    zygote = worker_zygote(broker, **env)

    def start() -> tuple[ForkedWorker, int]:
        return zygote.fork(broker, concurrency=2), len(sandbox.emulator.requests())

    def expire_wave() -> list[int]:
        wave = [live.pop() for _ in range(min(PER_WAVE, len(live)))]
        RoleAssignment.objects.filter(pk__in=wave).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        return wave

    worker, log_at = start()
    kills: list[str] = []
    misses: list[str] = []
    missed = 0
    began = time.monotonic()
    while len(kills) < KILLS_REQUIRED:
        assert time.monotonic() - began < TIME_BUDGET, (
            f"only {len(kills)} kills landed mid-removal in {TIME_BUDGET}s ({missed} missed); "
            f"seed {seed}; worker log:\n{worker.log_tail()}"
        )
        if not removing():
            assert live, f"ran out of roles to expire after {len(kills)} kills; seed {seed}"
            expire_wave()
        swept = wait_until(lambda: bool(removing()), timeout=30, interval=0.02)
        assert swept, f"no sweep marked a removal in 30s; seed {seed}\n{worker.log_tail()}"
        if rng.random() < 0.5:
            delay = rng.uniform(0, MAX_KILL_DELAY)
            when = f"{delay:.2f}s after the sweep marked them"
            time.sleep(delay)
        else:
            when = "after Azure answered a delete"
            wait_until(
                partial(writes_answered, sandbox, log_at, 1),
                timeout=ANSWER_WAIT,
                interval=0.02,
            )
        worker.kill()  # kill -9 of the whole process group: main process and pool children
        left = removing()
        deleted = sum(
            1
            for w in sandbox.arm_writes(log_at)
            if w["method"] == "DELETE" and 200 <= (w["status"] or 0) < 300
        )
        if left:
            kills.append(f"{when}: {deleted} delete(s) answered, {len(left)} removal(s) unfinished")
        else:
            missed += 1
            misses.append(f"{when}: {deleted} delete(s) answered, all removals finished")
        worker, log_at = start()

    done = wait_until(lambda: not removing(), timeout=90, interval=0.25)
    assert done, f"seed {seed}: removals left after {len(kills)} kills\n{worker.log_tail(60)}"
    now = timezone.now()
    problems = azure_disagreements(sandbox)
    ended = RoleAssignment.objects.filter(expires_at__lte=now).exclude(status=ChildStatus.REMOVED)
    problems += [
        f"assignment {pk} is past its end and not removed"
        for pk in ended.values_list("pk", flat=True)
    ]
    for identity in identities:
        identity.refresh_from_db()
        assert identity.status == Identity.Status.READY
        expected = {
            scope.lower()
            for scope in identity.role_assignments.filter(expires_at__isnull=True).values_list(
                "scope", flat=True
            )
        }
        if live_roles(identity) != expected:
            problems.append(f"identity {identity.name}: database {sorted(live_roles(identity))}")
        if azure_roles(sandbox, identity) != expected:
            problems.append(
                f"identity {identity.name}: Azure {sorted(azure_roles(sandbox, identity))}, "
                f"expected {sorted(expected)}"
            )
    assert problems == [], f"seed {seed}: " + "\n".join(problems)
    print(f"{len(kills)} kills mid-removal ({missed} missed):")
    print("\n".join(kills))
    print("missed:\n" + "\n".join(misses))
