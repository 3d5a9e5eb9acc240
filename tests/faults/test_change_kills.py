"""kill -9 of the worker in the middle of change requests' deltas, over and over.

Live identities (provisioned first, in the test process) get change requests one after another,
each adding one or two roles and removing one; a real worker process writes the deltas against
the emulator (with latency). The test kills the worker's whole process group at a random moment
after it started on a delta, or just after Azure answered one of its writes (the answer most
likely not yet recorded), then starts a new worker; the sweeper (a real celery beat) re-enqueues
what the dead worker left and the idempotent engine resumes it. At the end every change is
ready, each identity holds exactly the roles its approved changes leave it, nothing removed is
left in Azure and nothing is orphaned: Azure equals the database. FAULT_SEED=<seed> replays.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import pytest
from django.utils import timezone

from identities.models import ChildStatus, Identity, IdentityRequest, RequestStatus
from identities.policy import RoleDraft
from identities.services import identity_request_approve, identity_request_change_create
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.reconcile import reconcile_request
from tests.faults.consistency import azure_disagreements, ready_request_disagreements
from tests.faults.helpers import UNFINISHED, approve_new, fault_seed, statuses, wait_all_final
from tests.faults.test_worker_kills import SWEEPER_ENV, worker_activity_since, writes_answered
from tests.support.people import SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory, Sandbox, top_level_resource
from tests.support.services import postgres_or_missing, wait_until
from tests.support.worker_zygote import ForkedWorker, ZygoteFactory
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

KILLS_REQUIRED = 10  # kills that interrupted a change mid-delta (the issue asks for ≥ 10)
IDENTITIES = 4
LATENCY_MS = 150  # per ARM call: a delta of 2-3 writes takes a few hundred ms
MAX_KILL_DELAY = 0.6
UNFINISHED_TARGET = 3
TIME_BUDGET = 400.0
SECRETS_USER = "Key Vault Secrets User"


def vault(identity_number: int, n: int) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
        f"/providers/Microsoft.KeyVault/vaults/kv-c{identity_number}-{n}"
    )


def delta_progress(pk: int) -> str:
    """Where a change stood when the worker died, e.g. `added 1/2, removed 0/1, 2 running`."""
    steps = list(ProvisioningStep.objects.filter(identity_request_id=pk))
    if not steps:
        return "claimed, no step yet"
    added = [s for s in steps if s.key.startswith("role:")]
    removed = [s for s in steps if s.key.startswith("delete-role:")]
    done = StepStatus.DONE
    running = sum(1 for s in steps if s.status == StepStatus.RUNNING)
    return (
        f"added {sum(s.status == done for s in added)}/{len(added)}, "
        f"removed {sum(s.status == done for s in removed)}/{len(removed)}, {running} running"
    )


def live_roles(identity: Identity) -> set[str]:
    """Scopes (lower-cased) of the identity's live roles (all Key Vault Secrets User here)."""
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


def test_kill_9_mid_delta_leaves_each_identity_with_exactly_its_approved_roles(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: object,
    approver: object,
    worker_zygote: ZygoteFactory,
    start_beat: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    postgres_or_missing()
    seed = fault_seed("change kills")
    rng = random.Random(seed)

    # Live identities, provisioned here before any worker runs (no latency, no kills).
    identities: list[Identity] = []
    expected: dict[int, set[str]] = {}
    counters: dict[int, int] = {}
    for number in range(IDENTITIES):
        origin = approve_new(approved_request, 100 + number, roles=3)
        reconcile_request(origin.pk)
        origin.refresh_from_db()
        assert origin.status == RequestStatus.READY, origin.last_error
        identity = Identity.objects.get(pk=origin.identity_id)
        identities.append(identity)
        expected[identity.pk] = live_roles(identity)
        counters[identity.pk] = 0

    broker = make_broker("redis", tmp_path)
    use_broker(broker)
    sandbox.emulator.config(latency_ms=LATENCY_MS)
    env = {**sandbox.worker_env, **SWEEPER_ENV}
    start_beat(broker, **env)
    zygote = worker_zygote(broker, **env)

    changes: list[int] = []
    open_on: dict[int, int] = {}  # identity pk -> its change in flight

    def file_change(identity: Identity) -> None:
        """Add one or two roles and remove one; the expected roles follow the approved diff."""
        number = identities.index(identity)
        add = []
        for _ in range(rng.randint(1, 2)):
            counters[identity.pk] += 1
            add.append(RoleDraft(SECRETS_USER, vault(number, counters[identity.pk])))
        sandbox.emulator.register_resources(*sorted({top_level_resource(r.scope) for r in add}))
        held = sorted(expected[identity.pk])
        remove = [RoleDraft(SECRETS_USER, rng.choice(held))] if held else []
        change = identity_request_change_create(
            requester=requester,
            identity=identity,
            add=add,
            remove=remove,
            justification="Fault suite: a change of roles.",
        )
        identity_request_approve(identity_request=change, approver=approver)
        expected[identity.pk] = (expected[identity.pk] - {r.scope.lower() for r in remove}) | {
            r.scope.lower() for r in add
        }
        changes.append(change.pk)
        open_on[identity.pk] = change.pk

    def top_up() -> None:
        for identity_pk, change_pk in list(open_on.items()):
            if statuses([change_pk])[change_pk] == RequestStatus.READY:
                del open_on[identity_pk]
        free = [i for i in identities if i.pk not in open_on]
        rng.shuffle(free)
        while len(open_on) < UNFINISHED_TARGET and free:
            file_change(free.pop())

    def start() -> tuple[ForkedWorker, datetime, int]:
        moment, log_at = timezone.now(), len(sandbox.emulator.requests())
        return zygote.fork(broker, concurrency=2), moment, log_at

    top_up()
    worker, started, log_at = start()
    kills: list[str] = []
    missed = 0
    began = time.monotonic()
    while len(kills) < KILLS_REQUIRED:
        assert time.monotonic() - began < TIME_BUDGET, (
            f"only {len(kills)} kills landed mid-delta in {TIME_BUDGET}s ({missed} missed); "
            f"seed {seed}; worker log:\n{worker.log_tail()}"
        )
        active = wait_until(partial(worker_activity_since, started, changes), timeout=30)
        assert active, f"the worker did no work in 30s; seed {seed}\n{worker.log_tail()}"
        if rng.random() < 0.5:
            delay = rng.uniform(0, MAX_KILL_DELAY)
            when = f"{delay:.2f}s into the work"
            time.sleep(delay)
        else:
            writes = rng.randint(1, 3)
            when = f"after Azure answered write {writes}"
            answered = partial(writes_answered, sandbox, log_at, writes)
            wait_until(answered, timeout=MAX_KILL_DELAY, interval=0.02)
        worker.kill()  # kill -9 of the whole process group: main process and pool children
        hit = sorted(
            pk for pk in worker_activity_since(started, changes) if statuses([pk])[pk] in UNFINISHED
        )
        if hit:
            kills.append(f"{when}: " + "; ".join(f"#{pk} {delta_progress(pk)}" for pk in hit))
        else:
            missed += 1
        top_up()
        worker, started, log_at = start()

    final = wait_all_final(changes, timeout=60)
    worker_log = worker.log_tail(60)
    assert set(final.values()) == {RequestStatus.READY}, (
        f"seed {seed}: not all changes ready after {len(kills)} kills: {final}\n{worker_log}"
    )
    problems = azure_disagreements(sandbox)
    for identity_request in IdentityRequest.objects.filter(pk__in=changes):
        problems += ready_request_disagreements(identity_request)
    for identity in identities:
        identity.refresh_from_db()
        if identity.role_assignments.filter(
            status__in=(ChildStatus.PENDING, ChildStatus.REMOVING)
        ).exists():
            problems.append(f"identity {identity.name} has roles still pending or removing")
        if live_roles(identity) != expected[identity.pk]:
            problems.append(
                f"identity {identity.name}: database {sorted(live_roles(identity))}, "
                f"approved {sorted(expected[identity.pk])}"
            )
        if azure_roles(sandbox, identity) != expected[identity.pk]:
            problems.append(
                f"identity {identity.name}: Azure {sorted(azure_roles(sandbox, identity))}, "
                f"approved {sorted(expected[identity.pk])}"
            )
    assert problems == [], f"seed {seed}: " + "\n".join(problems)
    print(f"{len(kills)} kills mid-delta ({missed} missed), {len(changes)} changes:")
    print("\n".join(kills))
