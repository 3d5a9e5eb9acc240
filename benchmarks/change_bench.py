"""A change of roles on a live identity: time from approval to ready vs the emulator's latency L,
and the ARM writes it makes.

    .venv/bin/python benchmarks/change_bench.py [--latencies 50,100,200] [--runs 5] \\
        [--database-url postgres://postgres@127.0.0.1:5432/bench_change]

Starts its own emulator process and a throwaway SQLite database (or, with --database-url, its
own PostgreSQL database, created afresh) and runs the real engine in-process. For each run it
provisions an identity with 10 roles (latency 0, not measured), files a change that adds 1 role
and removes 1, then, with the emulator's per-request latency set to L (PATCH /_emulator/config),
approves the change and runs the reconcile engine until the request is `ready`.

- ARM writes: counted from the emulator's request log between approval and ready (target:
  exactly 2, the role added and the role removed; the identity and its credential untouched).
- time to ready: approval → `ready`; target ≤ 2·L (the two writes run concurrently: one ARM
  round trip plus bookkeeping).
- baseline: the same two writes one after another through the same SDK clients, as
  `az role assignment delete` then `az role assignment create` would (2·L at least).

Writes benchmarks/results/change.md (--output), and with --json PATH the figures.
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
from typing import Any

from common import (
    ROOT,
    Emulator,
    bench_draft,
    emulator_portal_env,
    is_arm_write,
    prepare_database,
    publish,
    sandbox_portal,
    start_emulator,
    vault_scopes,
)

ROLES = 10
SECRETS_USER_GUID = "4633458b-17de-408a-b874-0445c86b69e6"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latencies", default="50,100,200", help="L values in ms")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default="", help="its own PostgreSQL database")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "change.md"))
    parser.add_argument("--json", default="", help="also write the figures as JSON here")
    args = parser.parse_args()
    latencies = [int(value) for value in args.latencies.split(",")]

    work = Path(tempfile.mkdtemp(prefix="wip-bench-change-"))
    if args.database_url:
        prepare_database(args.database_url, reseed=True)
    emulator = start_emulator(work / "emulator", latency_ms=0, fic_write_ms=0)
    database = args.database_url or f"sqlite:///{work / 'bench.sqlite3'}"
    os.environ.update({**emulator_portal_env(emulator, database, work), "DEBUG": "1"})
    load_before = os.getloadavg()
    try:
        results = run(latencies, args.runs, emulator)
    finally:
        emulator.stop()
    load = (load_before[0], os.getloadavg()[0])
    database = "PostgreSQL" if database.startswith("postgres") else "SQLite"
    publish(
        args.output,
        render(results, args.runs, database, args.latencies, load),
        args.json,
        {"runs": args.runs, "database": database, "results": results, "load": load},
    )


def run(latencies: list[int], runs: int, emulator: Emulator) -> list[dict[str, Any]]:
    alice, sam, cluster = sandbox_portal()
    from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

    from identities.models import Identity
    from identities.policy import RoleDraft
    from identities.services import (
        identity_request_approve,
        identity_request_change_create,
        identity_request_create,
    )
    from provisioning.azure import get_gateway
    from provisioning.reconcile import reconcile_request

    subscription = cluster.subscription_id
    authorization = get_gateway().authorization(subscription)

    def latency(ms: int) -> None:
        emulator.control("PATCH", "config", {"latency_ms": ms})

    def live_identity(tag: str) -> Identity:
        latency(0)
        draft = bench_draft(cluster, tag, ROLES, tag)
        emulator.register_scopes(role.scope for role in draft.roles)
        identity_request = identity_request_create(requester=alice, draft=draft)
        identity_request_approve(identity_request=identity_request, approver=sam)
        reconcile_request(identity_request.pk)
        identity_request.refresh_from_db()
        if identity_request.status != "ready":
            raise SystemExit(f"request {identity_request.pk} ended {identity_request.status}")
        return Identity.objects.get(pk=identity_request.identity_id)

    def portal_once(ms: int, n: int) -> tuple[float, int, int]:
        tag = f"chg-{ms}-{n}"
        identity = live_identity(tag)
        [added_scope] = vault_scopes(subscription, 1, f"{tag}-new")
        emulator.register_scopes([added_scope])
        removed_scope = vault_scopes(subscription, ROLES, tag)[3]
        change = identity_request_change_create(
            requester=alice,
            identity=identity,
            add=[RoleDraft("Key Vault Secrets User", added_scope)],
            remove=[RoleDraft("Key Vault Secrets User", removed_scope)],
            justification="Benchmark run.",
        )
        latency(ms)
        start_log = len(emulator.log())
        started = time.perf_counter()
        identity_request_approve(identity_request=change, approver=sam)
        approval_times.append(time.perf_counter() - started)
        reconcile_request(change.pk)
        elapsed = time.perf_counter() - started
        change.refresh_from_db()
        if change.status != "ready":
            raise SystemExit(f"change {change.pk} ended {change.status}: {change.last_error}")
        writes = [entry for entry in emulator.log(start_log) if is_arm_write(entry)]
        identity.refresh_from_db()
        client_id_kept = int(
            Identity.objects.filter(pk=identity.pk, client_id=identity.client_id).exists()
        )
        return elapsed, len(writes), client_id_kept

    def baseline_once(ms: int, n: int) -> float:
        """az role assignment delete, then az role assignment create, one after another, on an
        identity of its own (10 roles, as the portal's)."""
        tag = f"az-{ms}-{n}"
        identity = live_identity(tag)
        old = identity.role_assignments.order_by("id")[3]
        [new_scope] = vault_scopes(subscription, 1, f"{tag}-new")
        emulator.register_scopes([new_scope])
        role_definition = (
            f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
            f"{SECRETS_USER_GUID}"
        )
        latency(ms)
        started = time.perf_counter()
        authorization.role_assignments.delete(old.scope, old.name)
        authorization.role_assignments.create(
            new_scope,
            str(uuid.uuid4()),
            RoleAssignmentCreateParameters(
                role_definition_id=role_definition,
                principal_id=identity.principal_id,
                principal_type="ServicePrincipal",
            ),
        )
        return time.perf_counter() - started

    baseline_once(0, -1)  # warm up: token, connections
    approval_times: list[float] = []
    results = []
    for ms in latencies:
        portal_times, baseline_times, writes, kept = [], [], [], []
        approval_times.clear()
        for n in range(runs):
            # Alternate so that drift in machine load hits both sides alike.
            elapsed, write_count, client_id_kept = portal_once(ms, n)
            portal_times.append(elapsed)
            writes.append(write_count)
            kept.append(client_id_kept)
            baseline_times.append(baseline_once(ms, n))
        results.append(
            {
                "latency_ms": ms,
                "portal": statistics.median(portal_times),
                "portal_max": max(portal_times),
                "approval": statistics.median(approval_times),
                "baseline": statistics.median(baseline_times),
                "writes": sorted(set(writes)),
                "client_id_kept": all(kept),
                "portal_runs": portal_times,
                "baseline_runs": baseline_times,
            }
        )
    latency(0)
    return results


def render(
    results: list[dict[str, Any]],
    runs: int,
    database: str,
    latencies: str,
    load: tuple[float, float],
) -> str:
    lines = [
        "# Change of roles: add 1 and remove 1 on an identity with 10 roles",
        "",
        f"- date: {datetime.now(tz=UTC):%Y-%m-%d %H:%M UTC}; machine: {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; 1-minute load average "
        f"{load[0]:.1f} at the start, {load[1]:.1f} at the end",
        f"- {runs} runs per L, medians (and the slowest run); portal and baseline alternated; "
        f"portal database: {database}; the engine in-process against the emulator over HTTPS",
        "- command: `.venv/bin/python benchmarks/change_bench.py "
        f"--latencies {latencies} --runs {runs}"
        + (" --database-url postgres://…`" if database == "PostgreSQL" else "`"),
        "",
        "| L (ms) | approval → ready (s) | of which approval (s) | ÷ L | beyond one round "
        "trip (s) | slowest (s) | target 2·L (s) | az-style delete then create (s) | ÷ L | "
        "ARM writes (target 2) | client id kept |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        latency = row["latency_ms"] / 1000
        lines.append(
            f"| {row['latency_ms']} | {row['portal']:.3f} | {row['approval']:.3f} | "
            f"{row['portal'] / latency:.2f} | {row['portal'] - latency:.3f} | "
            f"{row['portal_max']:.3f} | {2 * latency:.3f} | {row['baseline']:.3f} | "
            f"{row['baseline'] / latency:.2f} | {row['writes']} | "
            f"{'yes' if row['client_id_kept'] else 'NO'} |"
        )
    lines += [
        "",
        "The portal's time includes the approval transaction (policy re-run, desired state, audit "
        "rows), the step bookkeeping and the audit row of each write; the two ARM writes run "
        "concurrently, so the critical path is one round trip. The baseline is only the SDK "
        "calls, one after another.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
