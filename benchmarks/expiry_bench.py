"""The expiry sweep at scale: 10 000 identities, 10 % of them with a role ending at once, the
deletes against ARM's delete bucket.

- N ready identities with one role each are seeded with bulk_create (as reviews_bench.py does);
  the expiring share's role assignments also exist in the emulator (made through the portal's
  own gateway, unthrottled, before the run), under the names the portal holds;
- the emulator's delete bucket is set to ARM's documented subscription bound (200, refilled at
  10/s; Learn "Understand how Azure Resource Manager throttles requests", the token bucket
  table; azure_emulator/faults.py), so the bucket starts full;
- the sweep (`provisioning.sweep_expired_access`, the beat task's body) runs in this process: it
  scans all N, marks the expiring assignments `removing` with an audit row each and, on commit,
  sends one revoke task per identity; real `celery worker` processes delete them, honouring
  Retry-After on 429;
- figures: the sweep's own time, the deletes' wall time from the sweep's commit until every
  assignment is `removed`, deletes/s against the throttle's bound ((deletes - capacity) /
  refill seconds at the least, the same bound as throughput_bench.py), 429 answers, failures
  (assignments not removed, failed steps) and Azure equal to the database afterwards.

    .venv/bin/python benchmarks/expiry_bench.py [--identities 10000] [--expiring-share 0.1] \\
        [--workers 2] [--concurrency 8] [--database-url postgres://…/bench_expiry]

Writes benchmarks/results/expiry.md (--output) and --json PATH.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_REDIS_URL,
    DEFAULT_SERVER_URL,
    ROOT,
    Emulator,
    Started,
    database_url,
    emulator_portal_env,
    prepare_database,
    publish,
    sandbox_portal,
    start_emulator,
)
from throughput_bench import forget_queues, start_worker

TARGET_SHARE = 0.9
DELETE_BUCKET = 200  # ARM: subscription deletes, bucket size
DELETE_REFILL = 10.0  # ARM: subscription deletes, refill per second
DEADLINE_SECONDS = 1800


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--expiring-share", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="processes per worker")
    parser.add_argument("--bucket-capacity", type=int, default=DELETE_BUCKET)
    parser.add_argument("--refill-per-second", type=float, default=DELETE_REFILL)
    parser.add_argument("--database-url", default=database_url(DEFAULT_SERVER_URL, "bench_expiry"))
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "expiry.md"))
    parser.add_argument("--json", default="", help="also write the figures as JSON here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wip-expiry-"))
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
        "AZURE_SDK_RETRY_TOTAL": "0",
        "AZURE_TIME_BOUND_ASSIGNMENTS": "0",  # the portal's own sweep does the deletes
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }
    os.environ.update(env)
    workers: list[Started] = []
    load_before = [round(value, 2) for value in os.getloadavg()]
    try:
        result = run(args, emulator, env, work, workers)
    finally:
        for worker in workers:
            worker.stop()
        emulator.stop()
        forget_queues(args.redis_url, queue)
    load_after = [round(value, 2) for value in os.getloadavg()]
    result["load_average"] = {"start": load_before, "end": load_after}
    publish(args.output, render(result), args.json, result)


def seed(cluster: Any, alice: Any, identities: int, expiring: int, warm: int) -> list[Any]:
    """N + `warm` ready identities of team payments, each with its originating request and one
    role assignment; the first `expiring` end a minute ago, the last `warm` (the workers'
    warm-up) have no end. Returns the expiring assignments, then the warm-up ones."""
    from django.utils import timezone

    from identities.models import (
        CatalogRole,
        ChildStatus,
        Identity,
        IdentityRequest,
        RequestKind,
        RequestStatus,
        RoleAssignment,
        Team,
    )
    from provisioning.reconcile import role_assignment_name

    team = Team.objects.get(name="payments")
    role = CatalogRole.objects.get(name="Key Vault Secrets User")
    subscription = cluster.subscription_id
    now = timezone.now()
    rows = Identity.objects.bulk_create(
        (
            Identity(
                name=f"id-exp-{n:05d}",
                team=team,
                cluster=cluster,
                app_name=f"exp-{n:05d}",
                subscription_id=subscription,
                resource_group=cluster.resource_group,
                location=cluster.location,
                status=Identity.Status.READY,
                principal_id=str(uuid.UUID(int=n + 1, version=4)),
                client_id=str(uuid.uuid4()),
            )
            for n in range(identities + warm)
        ),
        batch_size=2000,
    )
    IdentityRequest.objects.bulk_create(
        (
            IdentityRequest(
                kind=RequestKind.NEW,
                app_name=identity.app_name,
                team=team,
                cluster=cluster,
                namespace="payments",
                service_account=identity.app_name,
                justification="Benchmark seed.",
                requester=alice,
                status=RequestStatus.READY,
                identity=identity,
            )
            for identity in rows
        ),
        batch_size=2000,
    )
    assignments = []
    for n, identity in enumerate(rows):
        scope = (
            f"/subscriptions/{subscription}/resourceGroups/rg-payments"
            f"/providers/Microsoft.KeyVault/vaults/kv-exp-{n:05d}"
        )
        assignments.append(
            RoleAssignment(
                identity=identity,
                role=role,
                scope=scope,
                status=ChildStatus.ACTIVE,
                name=role_assignment_name(
                    scope=scope,
                    principal_id=identity.principal_id,
                    role_guid=role.role_definition_guid,
                ),
                expires_at=(
                    now - timedelta(minutes=1)
                    if n < expiring
                    else None
                    if n >= identities
                    else now + timedelta(days=90)
                ),
            )
        )
    RoleAssignment.objects.bulk_create(assignments, batch_size=5000)
    chosen = RoleAssignment.objects.select_related("identity", "role").order_by("pk")
    return list(chosen.filter(expires_at__lte=now)) + list(
        chosen.filter(identity__name__gte=f"id-exp-{identities:05d}")
    )


def make_in_azure(emulator: Emulator, expiring: list[Any]) -> None:
    """The expiring assignments in the emulator, written through the portal's gateway (the
    principals registered in its directory first, the vaults in its inventory)."""
    from provisioning.azure import get_gateway

    emulator.register_scopes(assignment.scope for assignment in expiring)
    for assignment in expiring:
        emulator.control(
            "POST",
            "principals",
            {"id": assignment.identity.principal_id, "type": "ServicePrincipal"},
        )
    gateway = get_gateway()

    def put(assignment: Any) -> None:
        gateway.ensure_role_assignment(
            scope=assignment.scope,
            name=assignment.name,
            role_guid=assignment.role.role_definition_guid,
            principal_id=assignment.identity.principal_id,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, expiring))


def run(
    args: argparse.Namespace,
    emulator: Emulator,
    env: dict[str, str],
    work: Path,
    workers: list[Started],
) -> dict[str, Any]:
    alice, _sam, cluster = sandbox_portal()
    from celery import current_app

    from identities.models import ChildStatus, RoleAssignment
    from identities.work import Work, enqueue, sending_to
    from provisioning.models import ProvisioningStep, StepStatus
    from provisioning.tasks import sweep_expired_access

    expiring_count = round(args.identities * args.expiring_share)
    warm = 2 * args.workers * args.concurrency
    print(f"seeding {args.identities} identities, {expiring_count} expiring …", flush=True)
    began = time.perf_counter()
    seeded = seed(cluster, alice, args.identities, expiring_count, warm)
    make_in_azure(emulator, seeded)
    seed_seconds = time.perf_counter() - began
    expiring, warm_up = seeded[:expiring_count], seeded[expiring_count:]
    names = {assignment.name for assignment in expiring}
    assert len(names) == expiring_count and len(warm_up) == warm

    queue = env["CELERY_QUEUE"]
    for n in range(args.workers):
        workers.append(start_worker(f"revoker{n}", queue, args.concurrency, env, work))
    for worker in workers:
        worker.wait_for_log(" ready.", timeout=180)
    # Warm-up, unthrottled and outside the measure: each pool process's first task opens its
    # database connection, HTTPS session and ARM token, as a long-running worker has done.
    RoleAssignment.objects.filter(pk__in=[a.pk for a in warm_up]).update(
        status=ChildStatus.REMOVING
    )
    for assignment in warm_up:
        enqueue(Work.REVOKE_ROLES, assignment.identity_id)
    warmed = RoleAssignment.objects.filter(pk__in=[a.pk for a in warm_up])
    while warmed.exclude(status=ChildStatus.REMOVED).exists():
        time.sleep(0.25)

    # Setting the knobs refills the bucket: the run starts with a full one.
    emulator.control(
        "PATCH",
        "config",
        {
            "delete_bucket_capacity": args.bucket_capacity,
            "delete_bucket_refill_per_second": args.refill_per_second,
        },
    )
    mark = len(emulator.log())
    sent_at: list[float] = []

    def send(work_item: Work, work_args: tuple[object, ...]) -> None:
        # What the seam's Celery sender does (send_task by name), timed: the deletes can start
        # from the first revoke sent, which is at the expiry's commit, before the sweep returns.
        sent_at.append(time.perf_counter())
        current_app.send_task(str(work_item), args=list(work_args))

    print("sweep …", flush=True)
    swept_at = time.perf_counter()
    with sending_to(send):
        result = sweep_expired_access()
    returned_at = time.perf_counter()
    assert len(result["roles_expired_on"]) == expiring_count, result  # type: ignore[arg-type]
    first_sent = min(sent_at)
    expired = RoleAssignment.objects.filter(pk__in=[a.pk for a in expiring])
    removed = 0
    while time.perf_counter() - first_sent < DEADLINE_SECONDS:
        removed = expired.filter(status=ChildStatus.REMOVED).count()
        if removed == expiring_count:
            break
        time.sleep(0.25)
    done_at = time.perf_counter()
    seconds = done_at - first_sent

    log = emulator.log(mark)
    deletes = [e for e in log if e["method"] == "DELETE" and "/roleAssignments/" in e["path"]]
    succeeded = [e for e in deletes if e["status"] in (200, 204)]
    throttled = [e for e in deletes if e["status"] == 429]
    other = [e for e in deletes if e["status"] not in (200, 204, 429)]
    durations = sorted(e.get("duration_ms") or 0.0 for e in succeeded)
    failed_steps = ProvisioningStep.objects.filter(
        key__startswith="delete-role:", status=StepStatus.FAILED
    ).count()
    left_in_azure = sum(1 for record in _emulator_assignments(emulator) if record["name"] in names)
    bound_seconds = max(0.0, (expiring_count - args.bucket_capacity) / args.refill_per_second)
    return {
        "identities": args.identities,
        "expiring": expiring_count,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "bucket_capacity": args.bucket_capacity,
        "refill_per_second": args.refill_per_second,
        "seed_seconds": seed_seconds,
        "sweep_seconds": returned_at - swept_at,
        "first_revoke_sent_after_seconds": first_sent - swept_at,
        "delete_seconds": seconds,
        "removed": removed,
        "deletes_ok": len(succeeded),
        "deletes_throttled": len(throttled),
        "deletes_other": len(other),
        "failed_steps": failed_steps,
        "left_in_azure": left_in_azure,
        "warm_up": warm,
        "emulator_delete_ms_median": durations[len(durations) // 2] if durations else 0.0,
        "bound_seconds": bound_seconds,
        "deletes_per_second": removed / seconds if seconds else 0.0,
        "bound_rate": expiring_count / bound_seconds if bound_seconds else float("inf"),
        "share_of_bound": bound_seconds / seconds if seconds else 0.0,
        "target_share": TARGET_SHARE,
    }


def _emulator_assignments(emulator: Emulator) -> list[dict[str, Any]]:
    state = emulator.control("GET", "state")
    arm = state.get("arm", state)
    return list(arm["role_assignments"].values())


def render(r: dict[str, Any]) -> str:
    failures = (r["expiring"] - r["removed"]) + r["failed_steps"] + r["deletes_other"]
    ok = r["share_of_bound"] >= r["target_share"] and failures == 0 and r["left_in_azure"] == 0
    return f"""# The expiry sweep at scale (issue 16)

Command: `.venv/bin/python benchmarks/expiry_bench.py --identities {r["identities"]} \
--expiring-share {r["expiring"] / r["identities"]:g} --workers {r["workers"]} \
--concurrency {r["concurrency"]} --bucket-capacity {r["bucket_capacity"]} \
--refill-per-second {r["refill_per_second"]:g}`
Load average: {r["load_average"]["start"]} at the start, {r["load_average"]["end"]} at the end.

{r["identities"]} ready identities with one role each (seeded with bulk_create in
{r["seed_seconds"]:.0f} s, the {r["expiring"]} expiring ones' assignments also made in the
emulator); the emulator's delete bucket at {r["bucket_capacity"]}, refilled at
{r["refill_per_second"]:g}/s (ARM's subscription bound: 200 at 10/s), full at the start;
{r["workers"]} Celery worker(s) of {r["concurrency"]} processes on the revoke tasks, warmed up
first on {r["warm_up"]} other identities' deletes (unthrottled, not measured); the sweep itself
run in the benchmark process.

| figure | value |
|---|---|
| sweep (scan {r["identities"]}, mark {r["expiring"]} with an audit row each, send; \
then the identities' own ends) | {r["sweep_seconds"]:.1f} s |
| first revoke sent (the expiry's commit), after the sweep's start | \
{r["first_revoke_sent_after_seconds"]:.1f} s |
| deletes: from the first revoke sent until all {r["expiring"]} are `removed` | \
{r["delete_seconds"]:.1f} s |
| throttle bound: ({r["expiring"]} - {r["bucket_capacity"]}) / {r["refill_per_second"]:g} | \
{r["bound_seconds"]:.1f} s ({r["bound_rate"]:.2f} deletes/s over the run) |
| achieved deletes/s | {r["deletes_per_second"]:.2f} |
| share of the bound | {100 * r["share_of_bound"]:.1f} % |
| DELETEs answered 200/204 / 429 / other | {r["deletes_ok"]} / {r["deletes_throttled"]} / \
{r["deletes_other"]} |
| assignments removed in the database | {r["removed"]} of {r["expiring"]} |
| failed steps | {r["failed_steps"]} |
| expired assignments left in Azure | {r["left_in_azure"]} |
| the emulator's time per DELETE (median, from its request log) | \
{r["emulator_delete_ms_median"]:.0f} ms |

Verdict: {"met" if ok else "NOT met"} (target ≥ {100 * r["target_share"]:.0f} % of the delete
bound, 0 failures, Azure equal to the database). One figure per run: the run is bound by the
bucket's refill (a minute and more), so its variance is the Retry-After granularity (whole
seconds), not the machine; the load average above says how busy the machine was.
"""


if __name__ == "__main__":
    main()
