"""Throughput: approved requests through real Celery workers against ARM's write throttle.

    .venv/bin/python benchmarks/throughput_bench.py [--requests 500] [--workers 2] \\
        [--bucket-capacity 200] [--refill-per-second 10] \\
        [--database-url postgres://postgres@127.0.0.1:5432/bench_throughput] \\
        [--redis-url redis://127.0.0.1:6379/10]

Starts its own emulator with a per-subscription ARM write token bucket (the knobs
write_bucket_capacity and write_bucket_refill_per_second; an empty bucket answers 429 with
Retry-After), its own PostgreSQL database (dropped and created afresh), and --workers
`celery worker` processes (--concurrency pool processes each) on a queue of its own in Redis.
It files --requests requests for --roles roles each, then approves them all as fast as it can
and waits until every one is ready or failed. Measured, from the emulator's request log and
the audit trail:

- portal: ARM writes accepted and answered 429, failed requests, time from the first approval
  to the last `ready`, and the write rate that makes;
- the throttle's bound: the same writes can take no less than (writes - capacity) / refill
  seconds, since the bucket starts full; the target is at least 90 % of that rate with no
  failed request;
- baseline, in the same run after the bucket is refilled: one sequential az-style client (the
  SDK's own retry policy, which honours Retry-After, as az does) making the same writes;
- memory: peak RSS (VmHWM) of each worker process and its pool children at the end, beside an
  idle worker started the same way at the same time on a queue nobody fills.

Writes benchmarks/results/throughput.md (--output) and --json PATH for benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_REDIS_URL,
    DEFAULT_SERVER_URL,
    ROOT,
    Emulator,
    Started,
    az_style_identity,
    bench_draft,
    database_url,
    emulator_portal_env,
    is_arm_write,
    peak_rss,
    prepare_database,
    publish,
    sandbox_portal,
    start_emulator,
    start_process,
    vault_scopes,
    venv_executable,
)
from cryptography.fernet import Fernet

TARGET_SHARE = 0.9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--roles", type=int, default=1, help="role assignments per request")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes per worker")
    # ARM's documented per-subscription write bucket: 200 writes, refilled at 10 per second.
    parser.add_argument("--bucket-capacity", type=int, default=200)
    parser.add_argument("--refill-per-second", type=float, default=10)
    parser.add_argument("--latency-ms", type=int, default=0, help="emulator latency per request")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for ready")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--database-url", default=database_url(DEFAULT_SERVER_URL, "bench_throughput")
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "throughput.md"))
    parser.add_argument("--json", default="", help="also write the figures as JSON here")
    args = parser.parse_args()

    writes = args.requests * (2 + args.roles)
    if writes <= args.bucket_capacity:
        raise SystemExit(
            f"{writes} writes fit in the bucket ({args.bucket_capacity}): nothing to throttle"
        )
    work = Path(tempfile.mkdtemp(prefix="wip-throughput-"))
    prepare_database(args.database_url, reseed=True)
    emulator = start_emulator(work / "emulator", latency_ms=args.latency_ms)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "CELERY_"))},
        **emulator_portal_env(emulator, args.database_url, work),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "REDIS_URL": args.redis_url,
        "CELERY_QUEUE": queue,
        "AZURE_SDK_RETRY_TOTAL": "0",  # the engine is the one retry layer, as in production
    }
    os.environ.update(env)
    # This process's own SDK clients are the az-style baseline: the SDK's default retry policy.
    os.environ["AZURE_SDK_RETRY_TOTAL"] = "10"
    workers: list[Started] = []
    try:
        result = run(args, emulator, env, work, workers)
    finally:
        for worker in workers:
            worker.stop()
        emulator.stop()
        forget_queues(args.redis_url, queue)
    publish(args.output, render(result), args.json, result)


def forget_queues(redis_url: str, queue: str) -> None:
    """Drop what this run left in Redis: its queues and kombu's bindings for them."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"*{queue}*"))
    if keys:
        client.delete(*keys)


def start_worker(
    name: str, queue: str, concurrency: int, env: dict[str, str], work: Path
) -> Started:
    return start_process(
        name,
        [
            venv_executable("celery"),
            "-A",
            "portal",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            f"--hostname={name}@%h",
            "--without-mingle",
            "--without-gossip",
            "-Q",
            queue,
        ],
        # Workers log through settings.LOGGING (LOG_LEVEL wins over --loglevel): INFO, so the
        # " ready." line the benchmark waits for is written.
        {**env, "CELERY_QUEUE": queue, "LOG_LEVEL": "INFO"},
        work / f"{name}.log",
    )


def run(
    args: argparse.Namespace,
    emulator: Emulator,
    env: dict[str, str],
    work: Path,
    workers: list[Started],
) -> dict[str, Any]:
    alice, sam, cluster = sandbox_portal()
    from identities.models import AuditEvent, IdentityRequest
    from identities.services import identity_request_approve, identity_request_create

    print(f"filing {args.requests} requests …", flush=True)
    emulator.register_scopes(
        scope
        for n in range(args.requests)
        for scope in vault_scopes(cluster.subscription_id, args.roles, f"tp{n}")
    )
    pending = [
        identity_request_create(
            requester=alice,
            draft=bench_draft(cluster, f"tp-{n}", args.roles, f"tp{n}"),
        )
        for n in range(args.requests)
    ]

    queue = env["CELERY_QUEUE"]
    for index in range(args.workers):
        workers.append(start_worker(f"worker{index}", queue, args.concurrency, env, work))
    idle = start_worker("idle", f"{queue}-idle", args.concurrency, env, work)
    workers.append(idle)
    for worker in workers:
        worker.wait_for_log(" ready.", timeout=180)

    # Setting the knobs refills every bucket: the run starts with a full one.
    emulator.control(
        "PATCH",
        "config",
        {
            "write_bucket_capacity": args.bucket_capacity,
            "write_bucket_refill_per_second": args.refill_per_second,
        },
    )
    mark = len(emulator.log())
    print(f"approving {args.requests} requests …", flush=True)
    approve_started = time.perf_counter()
    for identity_request in pending:
        identity_request_approve(identity_request=identity_request, approver=sam)
    approve_seconds = time.perf_counter() - approve_started

    ids = [identity_request.pk for identity_request in pending]
    deadline = time.monotonic() + args.timeout
    while True:
        statuses = Counter(
            IdentityRequest.objects.filter(pk__in=ids).values_list("status", flat=True)
        )
        done = statuses["ready"] + statuses["failed"]
        if done == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(f"statuses: {dict(statuses)}", flush=True)
    memory = {
        "workers": [peak_rss(worker.popen.pid) for worker in workers if worker is not idle],
        "idle": peak_rss(idle.popen.pid),
    }

    events = AuditEvent.objects.filter(identity_request_id__in=ids)
    first_approval = (
        events.filter(action="identity_request.approved").order_by("id").first().created_at  # type: ignore[union-attr]
    )
    ready_events = events.filter(action="identity_request.ready").order_by("-id")
    last_ready = ready_events.first().created_at if ready_events.exists() else None  # type: ignore[union-attr]
    seconds = (last_ready - first_approval).total_seconds() if last_ready else None
    portal = summarize(emulator.log(mark), seconds, first_approval.timestamp())
    portal.update(
        {
            "statuses": dict(statuses),
            "failed": statuses["failed"],
            "unfinished": len(ids) - done,
            "approve_seconds": approve_seconds,
            "retried_steps": retried_steps(ids),
        }
    )

    baseline = None
    if not args.skip_baseline:
        baseline = az_baseline(args, emulator, cluster)
    writes = args.requests * (2 + args.roles)
    bound = (writes - args.bucket_capacity) / args.refill_per_second
    return {
        "requests": args.requests,
        "roles": args.roles,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "bucket_capacity": args.bucket_capacity,
        "refill_per_second": args.refill_per_second,
        "writes": writes,
        "bound_seconds": bound,
        "bound_rate": writes / bound,
        "portal": portal,
        "baseline": baseline,
        "memory": memory,
        "target_share": TARGET_SHARE,
    }


def retried_steps(ids: list[int]) -> dict[str, int]:
    """How hard the engine had to retry: attempts beyond the first, over all steps."""
    from django.db.models import Max, Sum

    from provisioning.models import ProvisioningStep

    steps = ProvisioningStep.objects.filter(identity_request_id__in=ids)
    totals = steps.aggregate(total=Sum("attempts"), most=Max("attempts"))
    return {
        "steps": steps.count(),
        "retries": (totals["total"] or 0) - steps.count(),
        "most_attempts": totals["most"] or 0,
    }


def summarize(log: list[dict[str, Any]], seconds: float | None, start: float) -> dict[str, Any]:
    """ARM writes accepted, throttled and failed, the rate, and a per-second series."""
    arm_writes = [entry for entry in log if is_arm_write(entry)]
    accepted = [entry for entry in arm_writes if entry["status"] < 400]
    throttled = [entry for entry in arm_writes if entry["status"] == 429]
    per_second: Counter[int] = Counter()
    per_second_429: Counter[int] = Counter()
    for entry in arm_writes:
        # The log's time has whole seconds; good enough for a per-second series.
        when = datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        second = int(when.timestamp() - int(start))
        if entry["status"] < 400:
            per_second[second] += 1
        elif entry["status"] == 429:
            per_second_429[second] += 1
    span = range(min(per_second, default=0), max(per_second, default=0) + 1)
    return {
        "seconds": seconds,
        "accepted_writes": len(accepted),
        "throttled_429": len(throttled),
        "other_errors": len(arm_writes) - len(accepted) - len(throttled),
        "rate": len(accepted) / seconds if seconds else None,
        "series": [[second, per_second[second], per_second_429[second]] for second in span],
    }


def az_baseline(args: argparse.Namespace, emulator: Emulator, cluster: Any) -> dict[str, Any]:
    """One sequential az-style client making the same writes against a refilled bucket."""
    from provisioning.azure import get_gateway

    gateway = get_gateway()
    msi = gateway.msi(cluster.subscription_id)
    authorization = gateway.authorization(cluster.subscription_id)
    # Changing a knob refills every bucket (off, then the same setting again).
    emulator.control("PATCH", "config", {"write_bucket_capacity": None})
    emulator.control("PATCH", "config", {"write_bucket_capacity": args.bucket_capacity})
    emulator.register_scopes(
        scope
        for n in range(args.requests)
        for scope in vault_scopes(cluster.subscription_id, args.roles, f"az{n}")
    )
    mark = len(emulator.log())
    print(f"baseline: {args.requests} identities one call after another …", flush=True)
    failed = 0
    started = time.perf_counter()
    wall_start = time.time()
    for n in range(args.requests):
        try:
            az_style_identity(
                msi,
                authorization,
                cluster,
                f"az-tp-{n}",
                vault_scopes(cluster.subscription_id, args.roles, f"az{n}"),
            )
        except Exception as exc:  # counted: the SDK gave up after its retries
            failed += 1
            print(f"baseline identity {n} failed: {exc}", flush=True)
    seconds = time.perf_counter() - started
    summary = summarize(emulator.log(mark), seconds, wall_start)
    summary["failed"] = failed
    return summary


def render(result: dict[str, Any]) -> str:
    portal, baseline = result["portal"], result["baseline"]
    bound_rate, refill = result["bound_rate"], result["refill_per_second"]

    def row(name: str, side: dict[str, Any] | None, failed: Any) -> str:
        if side is None:
            return f"| {name} | - | - | - | - | - | - |"
        seconds, rate = side["seconds"], side["rate"]
        return (
            f"| {name} | {seconds:.1f} | {side['accepted_writes']} | {side['throttled_429']} | "
            f"{rate:.2f} | {rate / bound_rate:.0%} | {failed} |"
            if seconds
            else f"| {name} | did not finish | {side['accepted_writes']} | "
            f"{side['throttled_429']} | - | - | {failed} |"
        )

    memory = result["memory"]
    lines = [
        "# Throughput against ARM's write throttle",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {result['requests']} requests with "
        f"{result['roles']} role(s) each ({result['writes']} ARM writes), "
        f"{result['workers']} Celery worker processes with {result['concurrency']} pool "
        f"process(es) on Redis, PostgreSQL; emulator write bucket {result['bucket_capacity']} "
        f"writes refilled at {refill:g}/s, latency {result['latency_ms']} ms.",
        "",
        f"Throttle bound: the bucket starts full, so {result['writes']} writes take at least "
        f"({result['writes']} - {result['bucket_capacity']}) / {refill:g} = "
        f"{result['bound_seconds']:.1f} s, i.e. {bound_rate:.2f} writes/s over the run "
        f"({refill:g}/s once the bucket is empty).",
        "",
        "| path | first approval → last ready (s) | ARM writes accepted | 429 answers | "
        "writes/s | share of the bound | failed requests |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("portal (Celery workers, engine retries)", portal, portal["failed"]),
        row("baseline: one sequential az-style client", baseline, (baseline or {}).get("failed")),
        "",
        f"Portal: approvals took {portal['approve_seconds']:.1f} s for all requests; the engine "
        f"retried {portal['retried_steps']['retries']} times over "
        f"{portal['retried_steps']['steps']} steps (at most "
        f"{portal['retried_steps']['most_attempts']} attempts on one step); "
        f"{portal['other_errors']} other ARM errors; statuses {portal['statuses']}.",
        "",
        "Peak RSS (VmHWM, MiB) of the worker processes at the end of the run, beside an idle "
        "worker started the same way:",
        "",
        "| process | main | pool children |",
        "|---|---:|---|",
    ]
    for index, worker in enumerate(memory["workers"]):
        lines.append(
            f"| worker {index} | {worker['peak_mib']} | "
            f"{', '.join(map(str, worker['children_peak_mib']))} |"
        )
    idle = memory["idle"]
    lines += [
        f"| idle worker (baseline) | {idle['peak_mib']} | "
        f"{', '.join(map(str, idle['children_peak_mib']))} |",
        "",
        verdict(result),
        "",
    ]
    return "\n".join(lines)


def verdict(result: dict[str, Any]) -> str:
    portal = result["portal"]
    share = portal["rate"] / result["bound_rate"] if portal["rate"] else 0.0
    met = share >= result["target_share"] and portal["failed"] == 0 and not portal["unfinished"]
    return (
        f"Target ≥ {result['target_share']:.0%} of the throttle's write rate with zero failed "
        f"requests: {'met' if met else 'MISSED'} ({share:.0%}, {portal['failed']} failed, "
        f"{portal['unfinished']} unfinished)."
    )


if __name__ == "__main__":
    main()
