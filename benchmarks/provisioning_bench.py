"""Time from approval to ready vs the sequential path a script of az commands takes.

    python3 dev.py test --collect-only -q >/dev/null   # (once) makes sure .venv exists
    .venv/bin/python benchmarks/provisioning_bench.py [--latency-ms 100] [--runs 5]

Starts its own emulator process with a fixed per-request latency L, a throwaway SQLite database
and the real engine, then for k = 1, 5, 10 roles measures, alternating in one run:

- portal: approve a request and run the reconcile engine until the request is `ready`
  (identity first, then the FIC and all k role assignments concurrently);
- baseline: the same 2 + k ARM writes issued one after another through the same SDK clients,
  as `az identity create`, `az identity federated-credential create` and k times
  `az role assignment create` would (without az's extra reads and process start-up, which would
  only make the baseline slower).

Reports medians, the ratio, and the ARM writes per identity counted from the emulator's request
log. Writes benchmarks/results/provisioning.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def start_emulator(state_dir: Path, latency_ms: int) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")}
    env["EMULATOR_LATENCY_MS"] = str(latency_ms)
    env["EMULATOR_FIC_WRITE_MS"] = "0"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioning.emulator",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url_file = state_dir / "url"
    deadline = time.monotonic() + 60
    while not url_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the emulator did not start")
        time.sleep(0.1)
    return process, url_file.read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--database-url",
        default="",
        help="e.g. postgres://postgres@127.0.0.1:5432/portal_provbench (default: throwaway SQLite)",
    )
    parser.add_argument(
        "--output", default=str(ROOT / "benchmarks" / "results" / "provisioning.md")
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wip-bench-"))
    state_dir = work / "emulator"
    state_dir.mkdir()
    emulator, url = start_emulator(state_dir, args.latency_ms)
    os.environ.update(
        {
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": args.database_url or f"sqlite:///{work / 'bench.sqlite3'}",
            "PORTAL_VAR_DIR": str(work / "var"),
            "AZURE_MODE": "emulator",
            "EMULATOR_URL": url,
            "EMULATOR_STATE_DIR": str(state_dir),
            "VERIFY_AFTER_PROVISIONING": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    try:
        results = run(args.latency_ms, args.runs, url, state_dir)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    database = "PostgreSQL" if args.database_url.startswith("postgres") else "SQLite"
    report = render(results, args.latency_ms, args.runs, database)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(report)
    print(report)


def run(latency_ms: int, runs: int, url: str, state_dir: Path) -> list[dict[str, object]]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import requests
    from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
    from azure.mgmt.msi.models import FederatedIdentityCredential, Identity

    from identities.models import Cluster, IdentityRequest
    from identities.policy import RequestDraft, RoleDraft
    from identities.services import identity_request_approve, identity_request_create
    from provisioning.azure import get_gateway
    from provisioning.reconcile import reconcile_request

    with open(os.devnull, "w") as quiet:
        call_command("seed_demo", "--force", stdout=quiet, stderr=quiet)
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    alice, sam = users.get(username="alice"), users.get(username="sam")
    cluster = Cluster.objects.get(name="aks-sandbox")
    subscription = cluster.subscription_id
    gateway = get_gateway()
    ca = str(state_dir / "ca.pem")

    def log_length() -> int:
        body = requests.get(f"{url}/_emulator/requests?since=0", verify=ca, timeout=30).json()
        return int(body["next"])

    def writes_since(start: int) -> int:
        body = requests.get(f"{url}/_emulator/requests?since={start}", verify=ca, timeout=30).json()
        return sum(
            1
            for entry in body["requests"]
            if entry["method"] in {"PUT", "PATCH", "DELETE"}
            and not entry["path"].startswith("/_emulator")
        )

    def scopes(k: int, tag: str) -> list[str]:
        return [
            f"/subscriptions/{subscription}/resourceGroups/rg-bench"
            f"/providers/Microsoft.KeyVault/vaults/kv-{tag}-{n}"
            for n in range(k)
        ]

    def portal_once(k: int, n: int) -> tuple[float, int]:
        draft = RequestDraft(
            kind="new",
            team="payments",
            cluster=cluster.name,
            namespace="payments",
            service_account=f"bench-{k}-{n}",
            app_name=f"bench-{k}-{n}",
            roles=tuple(RoleDraft("Key Vault Secrets User", s) for s in scopes(k, f"p{k}{n}")),
            justification="Benchmark run.",
        )
        identity_request = identity_request_create(requester=alice, draft=draft)
        start_log = log_length()
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
        name = f"az-bench-{k}-{n}-{uuid.uuid4().hex[:6]}"
        start_log = log_length()
        started = time.perf_counter()
        identity = msi.user_assigned_identities.create_or_update(
            cluster.resource_group, name, Identity(location=cluster.location)
        )
        msi.federated_identity_credentials.create_or_update(
            cluster.resource_group,
            name,
            "fic",
            FederatedIdentityCredential(
                issuer=cluster.oidc_issuer_url,
                subject=f"system:serviceaccount:payments:{name}",
                audiences=["api://AzureADTokenExchange"],
            ),
        )
        for scope in scopes(k, f"b{k}{n}"):
            authorization.role_assignments.create(
                scope,
                str(uuid.uuid4()),
                RoleAssignmentCreateParameters(
                    role_definition_id=f"/subscriptions/{subscription}/providers/Microsoft."
                    "Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
                    principal_id=identity.principal_id,
                    principal_type="ServicePrincipal",
                ),
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
        f"--latency-ms {latency_ms} --runs {runs}`",
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
