"""Azure answering 429 storms, 500 storms, timeouts, lost answers, or nothing at all.

One real worker process (for the whole module) provisions requests against the emulator while
its knobs inject the storm. Whatever happens, every request ends `ready`, or `failed` with a
`last_error` that names the operation and the Azure code, within a bound computed from the
retry settings: none is left `approved` or `provisioning`, no step is left `running`, and Azure
holds nothing the database does not know about.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from identities.models import IdentityRequest, RequestStatus
from provisioning.models import ProvisioningStep, StepStatus
from tests.faults.consistency import azure_disagreements, ready_request_disagreements
from tests.faults.helpers import (
    UNFINISHED,
    approve_new,
    fault_seed,
    statuses,
    wait_all_final,
    wait_worker_ready,
)
from tests.support.emulator import Emulator
from tests.support.sandbox import ApprovedRequestFactory, Sandbox
from tests.support.services import (
    ManagedProcess,
    celery_executable,
    child_env,
    postgres_or_missing,
    wait_until,
)
from tests.support.workers import Broker, make_broker

# serialized_rollback: the flush after each test then skips post_migrate, so the tests that
# restore the migrated rows (content types, groups, the catalog) after these still can.
pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

ATTEMPTS = 4
READ_TIMEOUT = 2  # seconds; the emulator holds a "timeout" for longer, so the client gives up
BACKOFF_MAX = 1.0
# A step makes ATTEMPTS calls, each ending by the read timeout, with at most BACKOFF_MAX between
# them; a request has two rounds of steps (the identity, then FICs and roles concurrently) after
# a token. Beyond this nothing may still be running.
STEP_WORST = ATTEMPTS * (READ_TIMEOUT + 1) + (ATTEMPTS - 1) * BACKOFF_MAX
# azure-identity retries a token request itself (4 tries, with backoff) before giving up.
TOKEN_WORST = 4 * (READ_TIMEOUT + 1) + 6
BOUND_SECONDS = 3 * STEP_WORST + TOKEN_WORST + 10
OPERATIONS = ("create managed identity", "create federated credential", "assign role")


@dataclass(frozen=True)
class Storm:
    name: str
    knobs: dict[str, Any]
    requests: int
    roles: int
    codes: frozenset[str]  # Azure codes a failed request may name
    # A request-log entry that proves the storm hit (None: a held call is logged only when the
    # emulator lets go of it, long after the test; the failures prove that one).
    served: Callable[[dict[str, Any]], bool] | None
    all_fail: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _status(code: int | None) -> Callable[[dict[str, Any]], bool]:
    return lambda entry: entry["status"] == code


# In this order: the module's worker has no token yet, so its first token requests meet the
# token endpoint that never answers, then (the token is cached once it has one) the 500 storm.
STORMS = [
    Storm(
        "Entra never answers a token request",
        {
            "fault_rate_timeout": 1.0,
            "fault_ops": ["entra.token.secret"],
            "fault_timeout_seconds": 60,
        },
        requests=1,
        roles=1,
        # Was AuthenticationFailed (permanent, at once): azure-identity wraps the read timeout
        # in ClientAuthenticationError, which the gateway now reads as the network error it is
        # (retried within the step's attempts and budget, then failed with this code).
        codes=frozenset({"Network"}),
        served=None,
        all_fail=True,
    ),
    Storm(
        "500 storm: half of all ARM and token calls",
        {"fault_rate_500": 0.5},
        requests=4,
        roles=2,
        codes=frozenset({"InternalServerError", "TokenEndpointUnavailable"}),
        served=_status(500),
    ),
    Storm(
        "429 storm: a write bucket of 2 refilled at 1.5/s",
        {"write_bucket_capacity": 2, "write_bucket_refill_per_second": 1.5},
        requests=4,
        roles=3,
        codes=frozenset({"SubscriptionRequestsThrottled"}),
        served=_status(429),
    ),
    Storm(
        "timeouts: a third of all calls held past the client's read timeout",
        {"fault_rate_timeout": 0.3, "fault_timeout_seconds": READ_TIMEOUT + 2},
        # Enough calls that the storm surely hits: with 3 requests (12 ARM writes) it missed
        # every call about one run in seventy (0.7**12), and the test failed as vacuous.
        requests=5,
        roles=2,
        codes=frozenset({"Network"}),
        served=_status(None),
    ),
    Storm(
        "lost answers: writes applied, then answered 500 or never",
        {
            "fault_phase": "after",
            "fault_ops": ["PUT"],
            "fault_rate_500": 0.3,
            "fault_rate_timeout": 0.15,
            "fault_timeout_seconds": READ_TIMEOUT + 2,
        },
        requests=3,
        roles=3,
        codes=frozenset({"InternalServerError", "Network"}),
        served=lambda entry: entry["method"] == "PUT" and entry["status"] in {500, None},
    ),
    Storm(
        "Azure never answers a FIC write",
        {"fault_rate_timeout": 1.0, "fault_ops": ["fic.put"], "fault_timeout_seconds": 60},
        requests=2,
        roles=1,
        codes=frozenset({"Network"}),
        served=None,
        all_fail=True,
    ),
]


@pytest.fixture(scope="module")
def storm_worker(
    emulator_process: Emulator,
    django_db_setup: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Broker, ManagedProcess]]:
    """One worker for every storm (booting one per test would double the module's time)."""
    postgres_or_missing()
    folder = tmp_path_factory.mktemp("storm-worker")
    broker = make_broker("redis", folder)
    env = child_env(
        **broker.env,
        AZURE_MODE="emulator",
        EMULATOR_URL=emulator_process.url,
        EMULATOR_STATE_DIR=str(emulator_process.state_dir),
        PROVISIONING_STEP_ATTEMPTS=str(ATTEMPTS),
        PROVISIONING_BACKOFF_SECONDS="0.05",
        PROVISIONING_BACKOFF_MAX_SECONDS=str(BACKOFF_MAX),
        AZURE_HTTP_CONNECT_TIMEOUT=str(READ_TIMEOUT),
        AZURE_HTTP_READ_TIMEOUT=str(READ_TIMEOUT),
        VERIFY_AFTER_PROVISIONING="0",
    )
    worker = ManagedProcess(
        name="storm-worker",
        args=[
            celery_executable(),
            "-A",
            "portal",
            "worker",
            "--loglevel=INFO",
            "--concurrency=4",
            f"--hostname=storm-{broker.queue}@%h",
            "--without-mingle",
            "--without-gossip",
            "-Q",
            broker.queue,
        ],
        env=env,
        log_path=folder / "worker.log",
    ).start()
    wait_worker_ready(worker)
    yield broker, worker
    worker.stop()


@pytest.mark.parametrize("storm", STORMS, ids=lambda storm: storm.name.split(":")[0])
def test_every_request_ends_ready_or_failed_with_a_clear_error_within_the_bound(
    storm: Storm,
    storm_worker: tuple[Broker, ManagedProcess],
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    use_broker: Callable[[Broker], None],
) -> None:
    broker, worker = storm_worker
    use_broker(broker)
    seed = fault_seed(storm.name)
    sandbox.emulator.config(**storm.knobs, fault_seed=random.Random(seed).randrange(2**31))
    began = time.monotonic()

    pks = [approve_new(approved_request, n, roles=storm.roles).pk for n in range(storm.requests)]
    final = wait_all_final(pks, timeout=BOUND_SECONDS)
    elapsed = time.monotonic() - began

    context = f"{storm.name}, seed {seed}, after {elapsed:.1f}s: {final}"
    stuck = {pk: status for pk, status in statuses(pks).items() if status in UNFINISHED}
    assert stuck == {}, f"still unfinished past {BOUND_SECONDS}s; {context}\n{worker.log_tail()}"
    if storm.served is not None:
        served = storm.served
        # A held call is logged when the emulator drops it, a little after the client gave up.
        hit = wait_until(
            lambda: any(served(entry) for entry in sandbox.emulator.requests()),
            timeout=storm.knobs.get("fault_timeout_seconds", 0) + 2,
        )
        assert hit, f"the storm never hit; {context}"
    running = ProvisioningStep.objects.filter(
        identity_request_id__in=pks, status=StepStatus.RUNNING
    )
    assert not running.exists(), f"steps left running: {list(running)}; {context}"

    problems: list[str] = []
    for identity_request in IdentityRequest.objects.filter(pk__in=pks):
        if identity_request.status == RequestStatus.READY:
            problems += ready_request_disagreements(identity_request)
            continue
        error = identity_request.last_error
        code = re.search(r"\(Azure code (\w+)", error)
        if code is None or code.group(1) not in storm.codes:
            problems.append(f"request {identity_request.pk}: no expected Azure code in {error!r}")
        if not any(operation in error for operation in OPERATIONS):
            problems.append(f"request {identity_request.pk}: no operation named in {error!r}")
    if storm.all_fail:
        assert set(final.values()) == {RequestStatus.FAILED}, context
    problems += azure_disagreements(sandbox)
    assert problems == [], context + "\n" + "\n".join(problems)
    errors = IdentityRequest.objects.filter(pk__in=pks, status=RequestStatus.FAILED)
    print(context)
    print("\n".join(f"  {r.pk}: {r.last_error}" for r in errors))
