"""Many subscriptions: throughput against three ARM write buckets, the write limiter on vs off.

    .venv/bin/python benchmarks/multisub_bench.py [--requests 1500] [--workers 6] \\
        [--split 60,30,10] [--bucket-capacity 40] [--refill-per-second 4] [--modes off,on] \\
        [--database-url postgres://postgres@127.0.0.1:5432/bench_multisub] \\
        [--redis-url redis://127.0.0.1:6379/10]

Issue 18, goal 2. Starts its own emulator (one write bucket per subscription, the knobs
write_bucket_capacity / write_bucket_refill_per_second, as ARM's per-subscription buckets), its
own PostgreSQL database and three clusters in three subscriptions. For each mode in --modes
(the write limiter "off": pacing by ARM's 429s only, as before; "on": the shared Redis limiter
with the same bucket sizes) it files --requests requests of one role each (3 ARM writes: the
identity, its FIC, the role), spread over the subscriptions by --split in a seeded random
order, approves them all into one queue, refills every bucket, then starts --workers
`celery worker` processes (one pool process each) and waits until every request is ready.

Scaling: ARM's buckets are 200 writes refilled at 10/s (20 s of refill); the default run
scales both down to 40 refilled at 4/s (10 s of refill), so that 1,500 requests take minutes
on a 2-core machine and the run is dominated by the refill rate, not the first burst. Each
subscription's bound is its refill rate: its w writes take at least (w - capacity) / refill
seconds from the start, since its bucket starts full; the summed bound is 3 x refill while all
three have work.

Measured per subscription, from the audit trail and the emulator's request log: writes, the
time its last request was ready (from the workers' start), its write rate over that time
against its bound, and the 429s ARM answered; overall: 429s, deferred runs, and the aggregate
rate while all three subscriptions still had work against the summed bound.

Writes benchmarks/results/multisub.md (--output) and --json PATH for benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import os
import random
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
    bench_draft,
    database_url,
    emulator_portal_env,
    is_arm_write,
    machine_info,
    prepare_database,
    publish,
    sandbox_portal,
    start_emulator,
    vault_scopes,
)
from throughput_bench import forget_queues, start_worker

TARGET_SHARE = 0.9
# The sandbox subscription (seed_demo) and two more.
EXTRA_SUBSCRIPTIONS = (
    "00000000-0000-4000-8000-000000000002",
    "00000000-0000-4000-8000-000000000003",
)
WRITES_PER_REQUEST = 3  # the identity, its FIC, one role assignment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=6, help="celery worker processes")
    parser.add_argument("--split", default="60,30,10", help="percent of requests per subscription")
    parser.add_argument("--bucket-capacity", type=int, default=40)
    parser.add_argument("--refill-per-second", type=float, default=4)
    parser.add_argument("--modes", default="off,on", help="write limiter modes, in run order")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait per mode")
    parser.add_argument(
        "--database-url", default=database_url(DEFAULT_SERVER_URL, "bench_multisub")
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "multisub.md"))
    parser.add_argument("--json", default="", help="also write the figures as JSON here")
    args = parser.parse_args()
    split = [float(part) for part in args.split.split(",")]
    if len(split) != 3:
        raise SystemExit("--split names three shares")

    work = Path(tempfile.mkdtemp(prefix="wip-multisub-"))
    prepare_database(args.database_url, reseed=True)
    emulator = start_emulator(work / "emulator")
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "CELERY_"))},
        **emulator_portal_env(emulator, args.database_url, work),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "REDIS_URL": args.redis_url,
        "CELERY_QUEUE": queue,
        "AZURE_SDK_RETRY_TOTAL": "0",  # the engine is the one retry layer, as in production
        "PROVISIONING_WRITE_BUCKET_CAPACITY": str(args.bucket_capacity),
        "PROVISIONING_WRITE_REFILL_PER_SECOND": str(args.refill_per_second),
        # The benchmark's own process writes nothing to ARM; the workers' mode is per run.
        "PROVISIONING_WRITE_LIMITER": "off",
        # Approvals write outbox rows whose deliveries (no SMTP server here: failing and
        # retrying) share the workers' queue and crowd out provisioning in both modes alike;
        # this measures provisioning against the write buckets (notify_bench.py measures them).
        "NOTIFICATIONS_ENABLED": "0",
    }
    os.environ.update(env)
    runs: list[dict[str, Any]] = []
    try:
        alice, sam, clusters = setup(emulator)
        for mode in args.modes.split(","):
            runs.append(run(args, mode, split, emulator, env, work, queue, alice, sam, clusters))
    finally:
        emulator.stop()
        forget_queues(args.redis_url, queue)
    result = {
        "requests": args.requests,
        "workers": args.workers,
        "split": split,
        "bucket_capacity": args.bucket_capacity,
        "refill_per_second": args.refill_per_second,
        "subscriptions": [cluster.subscription_id for cluster in clusters],
        "runs": runs,
        "target_share": TARGET_SHARE,
        "machine": machine_info(database_url=args.database_url, redis_url=args.redis_url),
    }
    publish(args.output, render(result), args.json, result)


def setup(emulator: Emulator) -> tuple[Any, Any, list[Any]]:
    """The sandbox cluster and one more in each extra subscription, payments owning its
    namespace and resource group there as in the sandbox."""
    alice, sam, sandbox = sandbox_portal()
    from identities.models import NamespaceOwnership, ResourceGroupOwnership, Team
    from provisioning.clusters import cluster_register, sandbox_cluster_create

    payments = Team.objects.get(name="payments")
    clusters = [sandbox]
    for n, subscription in enumerate(EXTRA_SUBSCRIPTIONS, start=2):
        name = f"aks-sandbox-{n}"
        sandbox_cluster_create(
            name=name,
            subscription_id=subscription,
            resource_group=sandbox.aks_resource_group,
            location=sandbox.location,
        )
        cluster = cluster_register(
            actor=None,
            name=name,
            subscription_id=subscription,
            resource_group=sandbox.resource_group,
            cluster_resource_group=sandbox.cluster_resource_group,
            location=sandbox.location,
            allowed_scope_subscriptions=[subscription],
            apply_service_account=sandbox.apply_service_account,
            emulated=True,
        ).cluster
        NamespaceOwnership.objects.get_or_create(
            cluster=cluster, namespace="payments", defaults={"team": payments}
        )
        ResourceGroupOwnership.objects.get_or_create(
            subscription_id=subscription, resource_group="rg-payments", defaults={"team": payments}
        )
        clusters.append(cluster)
    return alice, sam, clusters


def forget_buckets(redis_url: str) -> None:
    """Start each run with the limiter's copies full, as ARM's are after a knob change."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match="wip:arm-bucket:*"))
    if keys:
        client.delete(*keys)


def run(
    args: argparse.Namespace,
    mode: str,
    split: list[float],
    emulator: Emulator,
    env: dict[str, str],
    work: Path,
    queue: str,
    alice: Any,
    sam: Any,
    clusters: list[Any],
) -> dict[str, Any]:
    from identities.models import AuditEvent, IdentityRequest
    from identities.services import identity_request_approve, identity_request_create

    # What an earlier mode left queued (its requests' drift checks, runs restored by its
    # workers' shutdown) must not run first in this one.
    purge_queue(args.redis_url, queue)
    rng = random.Random(args.seed)
    counts = [round(args.requests * share / sum(split)) for share in split]
    counts[0] += args.requests - sum(counts)
    order = [index for index, count in enumerate(counts) for _ in range(count)]
    rng.shuffle(order)
    tag = f"{mode}{uuid.uuid4().hex[:4]}"
    print(f"[{mode}] filing {args.requests} requests {counts} …", flush=True)
    for index, cluster in enumerate(clusters):
        emulator.register_scopes(
            scope
            for n, which in enumerate(order)
            if which == index
            for scope in vault_scopes(cluster.subscription_id, 1, f"{tag}{n}")
        )
    pending = [
        (
            which,
            identity_request_create(
                requester=alice,
                draft=bench_draft(clusters[which], f"ms-{tag}-{n}", 1, f"{tag}{n}"),
            ),
        )
        for n, which in enumerate(order)
    ]
    print(f"[{mode}] approving …", flush=True)
    for _which, identity_request in pending:
        identity_request_approve(identity_request=identity_request, approver=sam)

    # Setting the knobs refills every bucket (off first, so the same values count as a change).
    emulator.control("PATCH", "config", {"write_bucket_capacity": None})
    emulator.control(
        "PATCH",
        "config",
        {
            "write_bucket_capacity": args.bucket_capacity,
            "write_bucket_refill_per_second": args.refill_per_second,
        },
    )
    forget_buckets(args.redis_url)
    mark = len(emulator.log())
    worker_env = {**env, "PROVISIONING_WRITE_LIMITER": "redis" if mode == "on" else "off"}
    workers: list[Started] = []
    try:
        for index in range(args.workers):
            workers.append(start_worker(f"{mode}-worker{index}", queue, 1, worker_env, work))
        for worker in workers:
            worker.wait_for_log(" ready.", timeout=180)
        started = datetime.now(UTC)
        load = [round(x, 2) for x in os.getloadavg()]
        print(f"[{mode}] workers ready (load {load}), provisioning …", flush=True)
        ids = [identity_request.pk for _which, identity_request in pending]
        deadline = time.monotonic() + args.timeout
        while True:
            statuses = Counter(
                IdentityRequest.objects.filter(pk__in=ids).values_list("status", flat=True)
            )
            done = statuses["ready"] + statuses["failed"]
            if done == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(1)
        deferred = sum(
            worker.log_path.read_text(errors="replace").count("running again in")
            for worker in workers
        )
    finally:
        for worker in workers:
            worker.stop()
    print(f"[{mode}] statuses: {dict(statuses)}", flush=True)

    log = emulator.log(mark)
    subscriptions = []
    for index, cluster in enumerate(clusters):
        sub_ids = [ir.pk for which, ir in pending if which == index]
        ready = AuditEvent.objects.filter(
            identity_request_id__in=sub_ids, action="identity_request.ready"
        )
        last = ready.order_by("-created_at").values_list("created_at", flat=True).first()
        seconds = (last - started).total_seconds() if last else None
        writes = [
            entry
            for entry in log
            if is_arm_write(entry)
            and entry["path"].lower().startswith(f"/subscriptions/{cluster.subscription_id}")
        ]
        accepted = sum(1 for entry in writes if entry["status"] < 400)
        # Accepted writes per second from the workers' start: where the bucket stood idle.
        timeline: Counter[int] = Counter(
            int(_log_time(entry) - started.timestamp()) for entry in writes if entry["status"] < 400
        )
        bound_seconds = max(0.0, accepted - args.bucket_capacity) / args.refill_per_second
        subscriptions.append(
            {
                "subscription": cluster.subscription_id,
                "requests": len(sub_ids),
                "ready": ready.count(),
                "accepted_writes": accepted,
                "throttled_429": sum(1 for entry in writes if entry["status"] == 429),
                "seconds": seconds,
                "bound_seconds": bound_seconds,
                "rate": accepted / seconds if seconds else None,
                "bound_rate": accepted / bound_seconds if bound_seconds else None,
                "writes_per_second": [timeline[n] for n in range(max(timeline, default=-1) + 1)],
            }
        )
    # While all three still had work: until the first of them finished.
    first_done = min((s["seconds"] or 0.0) for s in subscriptions)
    all_busy = _writes_until(log, started, first_done)
    return {
        "mode": mode,
        "started_at": f"{started:%Y-%m-%d %H:%M} UTC",
        "load_average_at_start": load,
        "statuses": dict(statuses),
        "unfinished": len(pending) - done,
        "seconds": max((s["seconds"] or 0.0) for s in subscriptions),
        "subscriptions": subscriptions,
        "throttled_429": sum(s["throttled_429"] for s in subscriptions),
        "accepted_writes": sum(s["accepted_writes"] for s in subscriptions),
        "deferred_runs": deferred,
        "all_busy_seconds": first_done,
        "all_busy_writes": all_busy,
        "all_busy_bound": len(clusters) * args.refill_per_second * first_done
        + len(clusters) * args.bucket_capacity,
    }


def purge_queue(redis_url: str, queue: str) -> None:
    """Drop the messages waiting in `queue`, not kombu's bindings, which the publisher has
    declared already."""
    import redis

    from portal.metrics import redis_queue_lists

    redis.Redis.from_url(redis_url).delete(*redis_queue_lists(queue))


def _writes_until(log: list[dict[str, Any]], started: datetime, seconds: float) -> int:
    """Accepted ARM writes from `started` for `seconds` (the log has whole-second times)."""
    end = started.timestamp() + seconds
    count = 0
    for entry in log:
        if not is_arm_write(entry) or entry["status"] >= 400:
            continue
        if _log_time(entry) <= end:
            count += 1
    return count


def _log_time(entry: dict[str, Any]) -> float:
    """An emulator log entry's time (whole seconds), as a timestamp."""
    return datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Many subscriptions: the write limiter against three ARM write buckets",
        "",
        *tables(result),
        "",
        "How to read it: with the limiter off, a write ARM refuses (429) is waited out inside "
        "its task (Retry-After), so the worker holds a slot while other subscriptions' requests "
        "wait behind it in the queue; with it on, a run whose tokens are not due within "
        "PROVISIONING_WRITE_MAX_INLINE_WAIT_SECONDS (1 s) is sent again with a countdown, its "
        "tokens reserved. With equal buckets and a 60/30/10 split the summed bound holds only "
        "while all three subscriptions have work (afterwards fewer buckets are in use), so the "
        "goal is read per subscription (each at ≥ 90 % of its own bound) and, for the summed "
        "bound, over the time all three had work. A light subscription's requests are spread "
        "through the whole queue, so it can finish no earlier than the queue is drained to its "
        "last request.",
        "",
        "Verdict: "
        + "; ".join(
            f"{target}: {state} ({measured})" for target, measured, state in verdicts(result)
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def tables(result: dict[str, Any]) -> list[str]:
    """The run's description and its two tables (also the section of benchmarks/report.py)."""
    refill, capacity = result["refill_per_second"], result["bucket_capacity"]
    lines = [
        # Older result files hold no start time: say so rather than print the report's own.
        "Runs started "
        + ", ".join(
            f"{run['mode']} {run.get('started_at', '(time not recorded)')} "
            f"(load average {run['load_average_at_start']})"
            for run in result["runs"]
        )
        + f": {result['requests']} requests of one "
        f"role each ({WRITES_PER_REQUEST} ARM writes), split "
        f"{'/'.join(f'{share:g}' for share in result['split'])} % over 3 subscriptions in a "
        f"seeded random order, all approved into one queue, then {result['workers']} Celery "
        f"worker processes (one pool process each) on Redis, PostgreSQL. Emulator write bucket "
        f"per subscription: {capacity} writes refilled at {refill:g}/s (ARM's 200 at 10/s, "
        "scaled so a run takes minutes on 2 cores); the limiter, when on, has the same sizes.",
        "",
        "Each subscription's bound: its bucket starts full, so its w accepted writes take at "
        f"least (w - {capacity}) / {refill:g} s; the summed bound is {3 * refill:g} writes/s "
        "while all three have work. Times are from the workers' start to the subscription's "
        "last `ready`.",
        "",
        "| limiter | subscription | requests | ARM writes | 429s | last ready (s) | bound (s) "
        "| writes/s | bound writes/s | share |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in result["runs"]:
        for sub in run["subscriptions"]:
            seconds, rate, bound = sub["seconds"], sub["rate"], sub["bound_rate"]
            share = f"{rate / bound:.0%}" if rate and bound else "-"
            lines.append(
                f"| {run['mode']} | …{sub['subscription'][-4:]} | {sub['requests']} | "
                f"{sub['accepted_writes']} | {sub['throttled_429']} | "
                f"{seconds:.1f} | {sub['bound_seconds']:.1f} | "
                f"{rate:.2f} | {bound:.2f} | {share} |"
                if seconds and rate and bound
                else f"| {run['mode']} | …{sub['subscription'][-4:]} | {sub['requests']} | "
                f"{sub['accepted_writes']} | {sub['throttled_429']} | "
                f"{seconds or '-'} | {sub['bound_seconds']:.1f} | - | - | - |"
            )
    lines += [
        "",
        "| limiter | all ready (s) | ARM writes | 429s | runs deferred | while all 3 busy: "
        "writes / bound | share | statuses |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for run in result["runs"]:
        busy_share = run["all_busy_writes"] / run["all_busy_bound"] if run["all_busy_bound"] else 0
        lines.append(
            f"| {run['mode']} | {run['seconds']:.1f} | {run['accepted_writes']} | "
            f"{run['throttled_429']} | {run['deferred_runs']} | "
            f"{run['all_busy_writes']} in {run['all_busy_seconds']:.1f} s / "
            f"{run['all_busy_bound']:.0f} | {busy_share:.0%} | {run['statuses']} |"
        )
    return lines


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, met / MISSED) per limiter mode."""
    rows = []
    for run in result["runs"]:
        shares = [
            sub["rate"] / sub["bound_rate"]
            for sub in run["subscriptions"]
            if sub["rate"] and sub["bound_rate"]
        ]
        worst = min(shares) if shares else 0.0
        met = (
            worst >= result["target_share"]
            and not run["unfinished"]
            and run["statuses"].get("failed", 0) == 0
        )
        rows.append(
            (
                f"3 subscriptions, limiter {run['mode']}: each ≥ {result['target_share']:.0%} "
                "of its write bound, 0 failed",
                f"worst {worst:.0%}; {run['throttled_429']} 429s per "
                f"{run['accepted_writes']} writes; {run['statuses']}",
                "met" if met else "MISSED",
            )
        )
    return rows


if __name__ == "__main__":
    main()
