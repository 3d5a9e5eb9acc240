"""kill -9 of the worker at random points of provisioning, over and over.

A real worker process provisions requests against the emulator (with latency, so a request
takes about a second); the test kills the worker's whole process group (main process and pool
processes) at a random moment after it started working, or just after Azure answered one of
its writes, then starts a new worker. Nothing tells the new worker what the dead one was doing:
the sweeper (run by a real celery beat) finds the requests left in `approved` or `provisioning`
and re-enqueues them, and the idempotent engine resumes them. A kill counts when a request the
dead worker was working on is still unfinished. At the end every request is ready and Azure
(the emulator's state) holds exactly what the database says, nothing more.

Workers are forked from a zygote that has the imports done (tests/support/worker_zygote.py), so
twenty-odd restarts cost seconds, not minutes. FAULT_SEED=<seed> replays a run's choices.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import pytest
from django.utils import timezone

from identities.models import AuditEvent, IdentityRequest, RequestStatus
from provisioning.models import ProvisioningStep, StepStatus
from tests.faults.consistency import azure_disagreements, ready_request_disagreements
from tests.faults.helpers import UNFINISHED, approve_new, fault_seed, statuses, wait_all_final
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import postgres_or_missing, wait_until
from tests.support.worker_zygote import ForkedWorker, ZygoteFactory
from tests.support.workers import Broker, WorkerFactory, make_broker

# serialized_rollback: the flush after each test then skips post_migrate, so the tests that
# restore the migrated rows (content types, groups, the catalog) after these still can.
pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

KILLS_REQUIRED = 20  # kills that interrupted a request mid-provisioning
LATENCY_MS = 150  # per ARM / token call: a request with k roles takes about a second
MAX_KILL_DELAY = 1.5  # seconds after the new worker's first progress
UNFINISHED_TARGET = 3  # keep this many requests in flight so every kill has work to hit
TIME_BUDGET = 400.0  # a backstop: about a minute on an idle 2-core machine

# The sweeper sees a request as stuck after 1 s without progress and runs every second, so the
# work a dead worker left is re-enqueued a second or two after its replacement is up.
SWEEPER_ENV = {
    "SWEEPER_APPROVED_AFTER_SECONDS": "1",
    "SWEEPER_STALE_SECONDS": "1",
    "SWEEPER_INTERVAL_SECONDS": "1",
    "VERIFY_AFTER_PROVISIONING": "0",
    "HEARTBEAT_INTERVAL_SECONDS": "3600",
}


def worker_activity_since(moment: datetime, pks: list[int]) -> set[int]:
    """Requests a worker worked on after `moment`: a step moved, or the engine wrote an audit
    row (claimed, an Azure write recorded, finished). The sweeper's re-enqueue does not count:
    it only queues a message."""
    by_steps = ProvisioningStep.objects.filter(identity_request_id__in=pks, updated_at__gt=moment)
    by_audit = AuditEvent.objects.filter(
        identity_request_id__in=pks, created_at__gt=moment, actor__isnull=True
    ).exclude(action="identity_request.requeued")
    return set(by_steps.values_list("identity_request_id", flat=True)) | set(
        by_audit.values_list("identity_request_id", flat=True)
    )


def writes_answered(sandbox: Sandbox, since: int, count: int) -> bool:
    """Azure has answered `count` writes with success since request-log line `since`."""
    answered = [w for w in sandbox.arm_writes(since) if 200 <= (w["status"] or 0) < 300]
    return len(answered) >= count


def progress_of(pk: int) -> str:
    """Where a request stood when the worker died, e.g. `identity done, 2/4 done`."""
    steps = list(ProvisioningStep.objects.filter(identity_request_id=pk))
    if not steps:
        return "claimed, no step yet"
    done = Counter(s.key.split(":", 1)[0] for s in steps if s.status == StepStatus.DONE)
    total = Counter(s.key.split(":", 1)[0] for s in steps)
    running = sum(1 for s in steps if s.status == StepStatus.RUNNING)
    return (
        f"identity {'done' if done['identity'] else 'not done'}, "
        f"fic {done['fic']}/{total['fic']}, roles {done['role']}/{total['role']}, "
        f"{running} running"
    )


def test_kill_9_at_random_points_of_provisioning_leaves_azure_exactly_as_the_database_says(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    worker_zygote: ZygoteFactory,
    start_beat: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    postgres_or_missing()
    seed = fault_seed("worker kills")
    rng = random.Random(seed)
    broker = make_broker("redis", tmp_path)
    use_broker(broker)
    sandbox.emulator.config(latency_ms=LATENCY_MS)
    env = {**sandbox.worker_env, **SWEEPER_ENV}
    start_beat(broker, **env)
    zygote = worker_zygote(broker, **env)

    pks: list[int] = []

    def top_up() -> None:
        while sum(s in UNFINISHED for s in statuses(pks).values()) < UNFINISHED_TARGET:
            pks.append(approve_new(approved_request, len(pks), roles=rng.randint(1, 5)).pk)

    def start() -> tuple[ForkedWorker, datetime, int]:
        moment, log_at = timezone.now(), len(sandbox.emulator.requests())
        return zygote.fork(broker, concurrency=2), moment, log_at

    top_up()
    worker, started, log_at = start()
    kills: list[str] = []  # when each kill came and how far the interrupted requests had got
    missed = 0  # kills that found nothing in flight (the work had just finished)
    began = time.monotonic()
    while len(kills) < KILLS_REQUIRED:
        assert time.monotonic() - began < TIME_BUDGET, (
            f"only {len(kills)} kills landed mid-provisioning in {TIME_BUDGET}s "
            f"({missed} missed); seed {seed}; worker log:\n{worker.log_tail()}"
        )
        active = wait_until(partial(worker_activity_since, started, pks), timeout=30)
        assert active, f"the worker did no work in 30s; seed {seed}\n{worker.log_tail()}"
        # Half the kills come at a random moment; half just after Azure answered a write, when
        # the answer is most likely not yet recorded (the window a retry must not duplicate).
        if rng.random() < 0.5:
            delay = rng.uniform(0, MAX_KILL_DELAY)
            when = f"{delay:.2f}s into the work"
            time.sleep(delay)
        else:
            writes = rng.randint(1, 4)
            when = f"after Azure answered write {writes}"
            answered = partial(writes_answered, sandbox, log_at, writes)
            wait_until(answered, timeout=MAX_KILL_DELAY, interval=0.02)
        worker.kill()  # kill -9 of the whole process group: main process and pool children
        hit = sorted(
            pk for pk in worker_activity_since(started, pks) if statuses([pk])[pk] in UNFINISHED
        )
        if hit:
            kills.append(f"{when}: " + "; ".join(f"#{pk} {progress_of(pk)}" for pk in hit))
        else:
            missed += 1
        top_up()
        worker, started, log_at = start()

    final = wait_all_final(pks, timeout=60)
    worker_log = worker.log_tail(60)
    assert set(final.values()) == {RequestStatus.READY}, (
        f"seed {seed}: not all ready after {len(kills)} kills: {final}\n{worker_log}"
    )
    problems = azure_disagreements(sandbox)
    for identity_request in IdentityRequest.objects.filter(pk__in=pks):
        problems += ready_request_disagreements(identity_request)
    assert problems == [], f"seed {seed}: " + "\n".join(problems)
    assert len(kills) >= KILLS_REQUIRED
    print(f"{len(kills)} kills mid-provisioning ({missed} missed), {len(pks)} requests:")
    print("\n".join(kills))
