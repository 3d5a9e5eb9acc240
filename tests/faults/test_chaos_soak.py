"""The chaos soak (tests/faults/soak.py): a short run in the fault suite, a long one on demand.

    pytest tests/faults/test_chaos_soak.py -rP                     # the short run (CI)
    SOAK_REQUESTS=200 pytest -m soak tests/faults/test_chaos_soak.py -rP   # the full run

Every random choice comes from the printed SOAK_SEED; SOAK_SEED=<n> replays a run. The full run
writes its figures to SOAK_REPORT (a Markdown file) when that is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.soak import WORKER_ENV, Api, Workers, run_soak
from tests.faults.soak_figures import SoakPlan
from tests.support.redis_server import RedisServer
from tests.support.sandbox import Sandbox
from tests.support.services import postgres_or_missing
from tests.support.tcp_proxy import TcpProxy
from tests.support.worker_zygote import ZygoteFactory
from tests.support.workers import Broker, WorkerFactory, make_broker

# serialized_rollback: the flush after each test then skips post_migrate, so the tests that
# restore the migrated rows (content types, groups, the catalog) after these still can.
pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

SoakRunner = Callable[[SoakPlan], Any]


@pytest.fixture
def soak(
    sandbox: Sandbox,
    requester: Any,
    approver: Any,
    worker_zygote: ZygoteFactory,
    start_beat: WorkerFactory,
    use_broker: Callable[[Broker], None],
    private_redis: RedisServer,
    postgres_proxy: TcpProxy,
    tmp_path: Path,
) -> SoakRunner:
    """`soak(plan)`: the processes of a run, set up, run and checked; returns the figures."""
    postgres_or_missing()

    def run(plan: SoakPlan) -> Any:
        broker = make_broker("redis", tmp_path, url=private_redis.url(0))
        broker.env["CACHE_URL"] = private_redis.url(1)  # the FIC lock dies with Redis too
        use_broker(broker)
        env = {**sandbox.worker_env, **WORKER_ENV}
        beat = start_beat(broker, **env)  # the beat talks to PostgreSQL directly
        zygote = worker_zygote(broker, **env, DATABASE_URL=postgres_proxy.database_url())
        workers = Workers(zygote, broker, tmp_path, plan.concurrency)
        return run_soak(
            plan=plan,
            sandbox=sandbox,
            api=Api(requester, approver),
            workers=workers,
            beat=beat,
            redis=private_redis,
            proxy=postgres_proxy,
        )

    return run


def test_a_short_chaos_soak_leaves_every_request_terminal_and_azure_as_the_database(
    soak: SoakRunner,
) -> None:
    plan = SoakPlan.from_env(
        requests=12,
        workers=3,
        concurrency=2,
        kills=3,
        in_flight=6,
        latency_ms=50,
        budget_seconds=150,  # a backstop: the run takes 30 to 60 s on a busy 2-core machine
    )
    figures = soak(plan)
    print(figures.summary())
    assert figures.problems == [], figures.summary()
    assert figures.kills == plan.kills
    assert figures.redis_restarts == figures.database_cuts == 1


@pytest.mark.soak
def test_the_full_chaos_soak(soak: SoakRunner) -> None:
    plan = SoakPlan.from_env(
        requests=200,
        workers=4,
        concurrency=2,
        kills=20,
        in_flight=12,
        latency_ms=50,
        budget_seconds=1800,
    )
    figures = soak(plan)
    print(figures.summary())
    report = os.environ.get("SOAK_REPORT")
    if report:
        Path(report).write_text(figures.markdown())
    assert figures.problems == [], figures.summary()
    assert figures.kills == plan.kills
    assert figures.redis_restarts == figures.database_cuts == 1
