"""Drift at scale: the scheduled drift run over N identities (3 roles each) against ARM's read
bucket, beside provisioning.

- N ready identities are provisioned first (in this process, unthrottled), then the emulator's
  read bucket is set to ARM's documented subscription bound (250, refilled at 25/s; Learn
  "Understand how Azure Resource Manager throttles requests");
- a real `celery worker` on the drift queue runs the spread run (leased batches, the cursor in
  the database, reads paced at DRIFT_READS_PER_SECOND = 25/s), another on the provisioning
  queue provisions requests;
- figures: ARM reads (emulator request log) and reads/s against the 25/s bound, 429s, reads per
  identity, the run's duration against its interval (scaled: 3600 s x N / 10 000, since the
  hourly interval is sized for 10 000 identities), and time to ready of requests approved during
  the run beside the same without a run.

Writes benchmarks/results/drift.md (--output) and --json PATH.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
import uuid
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
    median,
    prepare_database,
    publish,
    sandbox_portal,
    start_emulator,
)
from cryptography.fernet import Fernet
from throughput_bench import forget_queues, start_worker

TARGET_SHARE = 0.9
READ_BUCKET = 250  # ARM: subscription reads, bucket size
READ_REFILL = 25.0  # ARM: subscription reads, refill per second
FULL_SCALE = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=400)
    parser.add_argument("--roles", type=int, default=3)
    parser.add_argument("--probes", type=int, default=3, help="requests timed with/without")
    parser.add_argument("--database-url", default=database_url(DEFAULT_SERVER_URL, "bench_drift"))
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "drift.md"))
    parser.add_argument("--json", default="", help="also write the figures as JSON here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wip-drift-"))
    prepare_database(args.database_url, reseed=True)
    emulator = start_emulator(work / "emulator")
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    interval = round(3600 * args.identities / FULL_SCALE)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "CELERY_"))},
        **emulator_portal_env(emulator, args.database_url, work),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "REDIS_URL": args.redis_url,
        "CELERY_QUEUE": queue,
        "AZURE_SDK_RETRY_TOTAL": "0",
        "DRIFT_CHECK_INTERVAL_SECONDS": str(interval),
        "DRIFT_READS_PER_SECOND": str(READ_REFILL),
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }
    os.environ.update(env)
    workers: list[Started] = []
    load_before = [round(value, 2) for value in os.getloadavg()]
    try:
        result = run(args, emulator, env, work, workers, interval)
    finally:
        for worker in workers:
            worker.stop()
        emulator.stop()
        forget_queues(args.redis_url, queue)
    load_after = [round(value, 2) for value in os.getloadavg()]
    result["load_average"] = {"start": load_before, "end": load_after}
    publish(args.output, render(result), args.json, result)


def time_to_ready(alice: Any, sam: Any, cluster: Any, name: str, roles: int) -> float:
    from identities.models import IdentityRequest
    from identities.services import identity_request_approve, identity_request_create

    pending = identity_request_create(
        requester=alice, draft=bench_draft(cluster, name, roles, name)
    )
    started = time.perf_counter()
    identity_request_approve(identity_request=pending, approver=sam)
    while IdentityRequest.objects.get(pk=pending.pk).status not in {"ready", "failed"}:
        time.sleep(0.02)
    assert IdentityRequest.objects.get(pk=pending.pk).status == "ready"
    return time.perf_counter() - started


def run(
    args: argparse.Namespace,
    emulator: Emulator,
    env: dict[str, str],
    work: Path,
    workers: list[Started],
    interval: int,
) -> dict[str, Any]:
    alice, sam, cluster = sandbox_portal()
    from identities.services import identity_request_approve, identity_request_create
    from identities.work import sending_to
    from provisioning.drift import run_tick
    from provisioning.models import DriftRun
    from provisioning.reconcile import reconcile_request
    from provisioning.tasks import drift_batch

    names = [f"dr-{n}" for n in range(args.identities)]
    probes = [f"probe-{n}" for n in range(2 * args.probes)]
    emulator.register_scopes(
        scope
        for name in [*names, *probes, "warm-up"]
        for scope in [
            f"/subscriptions/{cluster.subscription_id}/resourceGroups/rg-payments"
            f"/providers/Microsoft.KeyVault/vaults/kv-{name}-{n}"
            for n in range(args.roles)
        ]
    )
    print(f"provisioning {args.identities} identities with {args.roles} roles …", flush=True)
    seeded = time.perf_counter()
    # Reconciled here, not by a worker; no notification deliveries queued for the seed.
    with sending_to(lambda *_: None):
        for name in names:
            pending = identity_request_create(
                requester=alice, draft=bench_draft(cluster, name, args.roles, name)
            )
            identity_request_approve(identity_request=pending, approver=sam)
            reconcile_request(pending.pk)
    seed_seconds = time.perf_counter() - seeded

    queue = env["CELERY_QUEUE"]
    workers.append(start_worker("provisioner", queue, 1, env, work))
    workers.append(start_worker("drifter", f"{queue}-drift", 1, env, work))
    for worker in workers:
        worker.wait_for_log(" ready.", timeout=180)

    time_to_ready(alice, sam, cluster, "warm-up", args.roles)  # the worker's first task warms up
    print("time to ready without a drift run …", flush=True)
    alone = [time_to_ready(alice, sam, cluster, name, args.roles) for name in probes[: args.probes]]

    emulator.control(
        "PATCH",
        "config",
        {"read_bucket_capacity": READ_BUCKET, "read_bucket_refill_per_second": READ_REFILL},
    )
    mark = len(emulator.log())

    def enqueue(run_id: int, ticket: str, countdown: float) -> None:
        drift_batch.apply_async(args=(run_id, ticket), queue=f"{queue}-drift")

    print("drift run …", flush=True)
    assert run_tick(enqueue_batch=enqueue)["status"] == "started"
    drift_run = DriftRun.objects.get(active=True)
    time.sleep(3)
    beside = [
        time_to_ready(alice, sam, cluster, name, args.roles) for name in probes[args.probes :]
    ]
    during = DriftRun.objects.get(pk=drift_run.pk).active
    while DriftRun.objects.get(pk=drift_run.pk).active:
        run_tick(enqueue_batch=enqueue)  # what beat does every DRIFT_TICK_SECONDS
        time.sleep(1)
    drift_run.refresh_from_db()
    assert drift_run.finished_at is not None
    duration = (drift_run.finished_at - drift_run.started_at).total_seconds()
    log = emulator.log(mark)
    reads = [e for e in log if e["method"] == "GET" and e["path"].startswith("/subscriptions/")]
    throttled = sum(1 for e in reads if e["status"] == 429)
    # The probes' own reads are few (the engine reads back little); counted from the run.
    rate = drift_run.reads / duration
    per_identity = drift_run.reads / max(1, drift_run.checked)
    projected = FULL_SCALE * per_identity / rate
    return {
        "identities": args.identities,
        "roles": args.roles,
        "seed_seconds": seed_seconds,
        "interval_seconds": interval,
        "run": {
            "checked": drift_run.checked,
            "errors": drift_run.errors,
            "drifted": drift_run.drifted,
            "batches": drift_run.batches,
            "reads": drift_run.reads,
            "throttled": drift_run.throttled,
            "duration_seconds": duration,
        },
        "emulator_reads": len(reads),
        "emulator_429": throttled,
        "reads_per_identity": per_identity,
        "reads_per_second": rate,
        "bound_per_second": READ_REFILL,
        "share_of_bound": rate / READ_REFILL,
        "projected_full_scale_seconds": projected,
        "time_to_ready_alone": alone,
        "time_to_ready_during_run": beside,
        "probes_finished_during_run": during,
        "target_share": TARGET_SHARE,
    }


def render(r: dict[str, Any]) -> str:
    run = r["run"]
    ok = r["share_of_bound"] >= TARGET_SHARE and run["duration_seconds"] <= r["interval_seconds"]
    alone, beside = median(r["time_to_ready_alone"]), median(r["time_to_ready_during_run"])
    return f"""# Drift at scale (issue 18, goal 4)

Command: `.venv/bin/python benchmarks/drift_bench.py --identities {r["identities"]}`
Load average: {r["load_average"]["start"]} at the start, {r["load_average"]["end"]} at the end.

{r["identities"]} identities with {r["roles"]} roles each (seeded in {r["seed_seconds"]:.0f} s),
the emulator's read bucket at ARM's subscription bound (250, refilled at 25/s), one drift worker
(its own queue) and one provisioning worker.

| figure | value |
|---|---|
| identities checked / errors / drifted | {run["checked"]} / {run["errors"]} / {run["drifted"]} |
| batches | {run["batches"]} |
| ARM reads (run) / in the emulator's log | {run["reads"]} / {r["emulator_reads"]} |
| reads per identity | {r["reads_per_identity"]:.2f} |
| 429 answers | {run["throttled"]} (log: {r["emulator_429"]}) |
| run duration | {run["duration_seconds"]:.1f} s |
| interval (3600 s x N / 10 000) | {r["interval_seconds"]} s |
| achieved reads/s vs bound | {r["reads_per_second"]:.2f} / {r["bound_per_second"]:.0f} \
= {100 * r["share_of_bound"]:.1f} % |
| projected 10 000 identities | {r["projected_full_scale_seconds"]:.0f} s of a 3600 s interval |
| time to ready, no run (median of {len(r["time_to_ready_alone"])}) | {alone:.2f} s |
| time to ready during the run (median of {len(r["time_to_ready_during_run"])}) | \
{beside:.2f} s (all while the run was active: {r["probes_finished_during_run"]}) |

Verdict: {"met" if ok else "NOT met"} (target ≥ {100 * r["target_share"]:.0f} % of the read bound,
inside the interval). Scaling: N = {r["identities"]} here; 10 000 would take about 20 minutes of
reads on this machine; the rate, not N, is what the run is bound by, so the projection is
10 000 x reads per identity / achieved rate.
"""


if __name__ == "__main__":
    main()
