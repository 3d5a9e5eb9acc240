"""Time from approval to ready vs the sequential path a script of az commands takes.

    python3 dev.py test --collect-only -q >/dev/null   # (once) makes sure .venv exists
    .venv/bin/python benchmarks/provisioning_bench.py [--latency-ms 100] [--runs 5]

Starts its own emulator process with a fixed per-request latency L, a throwaway SQLite database
(or, with --database-url, its own PostgreSQL database, created afresh) and the real engine,
then for k = 1, 5, 10 roles measures, alternating in one run:

- portal: approve a request and run the reconcile engine until the request is `ready`
  (identity first, then the FIC and all k role assignments concurrently);
- baseline: the same 2 + k ARM writes issued one after another through the same SDK clients,
  as `az identity create`, `az identity federated-credential create` and k times
  `az role assignment create` would (without az's extra reads and process start-up, which would
  only make the baseline slower).

Reports medians, the ratio, and the ARM writes per identity counted from the emulator's request
log. Writes benchmarks/results/provisioning.md (--output), and with --json PATH the figures
for benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from common import (
    ROOT,
    Emulator,
    az_style_identity,
    bench_draft,
    emulator_portal_env,
    is_arm_write,
    prepare_database,
    publish,
    sandbox_portal,
    start_emulator,
    vault_scopes,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--database-url",
        default="",
        help="its own PostgreSQL database, dropped and created afresh, e.g. "
        "postgres://postgres@127.0.0.1:5432/bench_provisioning (default: throwaway SQLite)",
    )
    parser.add_argument(
        "--output", default=str(ROOT / "benchmarks" / "results" / "provisioning.md")
    )
    parser.add_argument("--json", default="", help="also write the figures as JSON here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wip-bench-"))
    if args.database_url:
        prepare_database(args.database_url, reseed=True)
    emulator = start_emulator(work / "emulator", latency_ms=args.latency_ms, fic_write_ms=0)
    database = args.database_url or f"sqlite:///{work / 'bench.sqlite3'}"
    os.environ.update({**emulator_portal_env(emulator, database, work), "DEBUG": "1"})
    try:
        results = run(args.runs, emulator)
    finally:
        emulator.stop()
    database = "PostgreSQL" if database.startswith("postgres") else "SQLite"
    publish(
        args.output,
        render(results, args.latency_ms, args.runs, database),
        args.json,
        {
            "latency_ms": args.latency_ms,
            "runs": args.runs,
            "database": database,
            "results": results,
        },
    )


def run(runs: int, emulator: Emulator) -> list[dict[str, object]]:
    alice, sam, cluster = sandbox_portal()
    from identities.models import IdentityRequest
    from identities.services import identity_request_approve, identity_request_create
    from provisioning.azure import get_gateway
    from provisioning.reconcile import reconcile_request

    subscription = cluster.subscription_id
    gateway = get_gateway()

    def writes_since(start: int) -> int:
        return sum(1 for entry in emulator.log(start) if is_arm_write(entry))

    def portal_once(k: int, n: int) -> tuple[float, int]:
        draft = bench_draft(cluster, f"bench-{k}-{n}", k, f"p{k}{n}")
        emulator.register_scopes(role.scope for role in draft.roles)
        identity_request = identity_request_create(requester=alice, draft=draft)
        start_log = len(emulator.log())
        started = time.perf_counter()
        identity_request_approve(identity_request=identity_request, approver=sam)
        approved = time.perf_counter()
        reconcile_request(identity_request.pk)
        elapsed = time.perf_counter() - started
        approval_times.append(approved - started)
        status = IdentityRequest.objects.get(pk=identity_request.pk).status
        if status != "ready":
            raise SystemExit(f"request {identity_request.pk} ended {status}")
        return elapsed, writes_since(start_log)

    msi = gateway.msi(subscription)
    authorization = gateway.authorization(subscription)

    def baseline_once(k: int, n: int) -> tuple[float, int]:
        emulator.register_scopes(vault_scopes(subscription, k, f"b{k}{n}"))
        start_log = len(emulator.log())
        started = time.perf_counter()
        az_style_identity(
            msi,
            authorization,
            cluster,
            f"az-bench-{k}-{n}-{uuid.uuid4().hex[:6]}",
            vault_scopes(subscription, k, f"b{k}{n}"),
        )
        return time.perf_counter() - started, writes_since(start_log)

    baseline_once(1, -1)  # warm up: token, connections
    results = []
    approval_times: list[float] = []
    for k in (1, 5, 10):
        portal_times, baseline_times, portal_writes = [], [], []
        approval_times.clear()
        for n in range(runs):
            # Alternate so that drift in machine load hits both sides alike.
            elapsed, writes = portal_once(k, n)
            portal_times.append(elapsed)
            portal_writes.append(writes)
            baseline_times.append(baseline_once(k, n)[0])
        results.append(
            {
                "k": k,
                "portal": statistics.median(portal_times),
                "baseline": statistics.median(baseline_times),
                "writes": sorted(set(portal_writes)),
                "approval": statistics.median(approval_times),
                "portal_runs": portal_times,
                "baseline_runs": baseline_times,
            }
        )
    return results


def render(results: list[dict[str, object]], latency_ms: int, runs: int, database: str) -> str:
    latency = latency_ms / 1000
    lines = [
        "# Provisioning: approval → ready vs a sequential az script",
        "",
        f"- date: {datetime.now(tz=UTC):%Y-%m-%d %H:%M UTC}; machine: {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        f"- emulator latency L = {latency_ms} ms per ARM request; {runs} runs per k, medians; "
        f"portal and baseline alternated in one run; portal database: {database}",
        "- command: `.venv/bin/python benchmarks/provisioning_bench.py "
        f"--latency-ms {latency_ms} --runs {runs}"
        + (" --database-url postgres://…`" if database == "PostgreSQL" else "`"),
        "",
        "| k roles | portal (s) | of which approval (s) | portal / L | az-style sequential (s) | "
        "baseline / L | portal ÷ baseline | ARM writes per identity (target 2 + k) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        portal, baseline = float(row["portal"]), float(row["baseline"])  # type: ignore[arg-type]
        lines.append(
            f"| {row['k']} | {portal:.3f} | {float(row['approval']):.3f} | "  # type: ignore[arg-type]
            f"{portal / latency:.1f} | {baseline:.3f} | "
            f"{baseline / latency:.1f} | {portal / baseline:.2f} | {row['writes']} |"
        )
    lines += [
        "",
        "The portal's time includes the approval transaction, step bookkeeping and audit rows; "
        "the baseline is only the SDK calls. Target: at most about 3·L whatever k.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
