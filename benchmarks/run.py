"""Run every benchmark of the portal, each beside its baseline, and write one report with plots.

    .venv/bin/python benchmarks/run.py [--quick] \\
        [--database-url postgres://postgres@127.0.0.1:5432/] [--redis-url redis://127.0.0.1:6379/10]
        [--only provisioning,api,audit,web,throughput,expiry,multisub,drift] [--reseed]
        [--output-dir DIR] [--report-only]

Each benchmark is its own script, run here as a child process with `--json` (so each gets a
fresh Django set up its own way) and its own markdown report beside the summary:

1. provisioning_bench.py  approval → ready for k = 1, 5, 10, 20 roles vs the measured floor
                          and the sequential az path
2. api_bench.py           REST API latency on 100 000 requests / 1 000 000 audit events vs
                          minimal hand-written views (seeds its database once, reused later)
3. audit_bench.py         `manage.py audit_verify` over that audit trail vs reading it raw
4. web_bench.py           peak RSS of gunicorn serving the API (and one export) vs an idle one
5. throughput_bench.py    500 requests through 2 Celery workers against the ARM write throttle
                          vs its bound and a sequential az-style client; worker peak RSS vs idle
6. expiry_bench.py        the expiry sweep over 10 000 identities, 1 000 roles ending at once,
                          deleted by 2 Celery workers against the ARM delete throttle vs its bound
7. multisub_bench.py      1 500 requests over 3 subscriptions' write buckets (60/30/10 %), 6
                          workers, the write limiter off vs on; per-subscription rate vs bound
8. drift_bench.py         the drift check over 300 identities x 3 roles against ARM's read
                          bucket (250, 25/s) beside provisioning; reads/s vs bound, projected
                          to 10 000 identities, time to ready with and without a run

Databases (created by the benchmarks, names all contain "bench"): bench_provisioning,
bench_throughput, bench_expiry, bench_multisub and bench_drift (dropped and created afresh
each run) and bench_api (seeded once; --reseed starts over; --quick uses bench_api_quick).
Redis: the given database, queues of their own.

--quick runs the same code at small sizes (minutes, for checking the machinery) and writes to
benchmarks/results/quick/; its report says it is not the real figures. Without it, the sizes
are the issue's and the report goes to benchmarks/results/report.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import DEFAULT_REDIS_URL, DEFAULT_SERVER_URL, ROOT, database_url, machine_info
from report import write_report

BENCHMARKS = (
    "provisioning",
    "api",
    "audit",
    "web",
    "throughput",
    "expiry",
    "multisub",
    "drift",
)

# Sizes: the (full) and a small run that exercises the same code (quick).
SIZES: dict[str, dict[str, str]] = {
    "full": {
        "provisioning": "--latency-ms 100 --runs 7 --ks 1,5,10,20",
        "api": "--requests 100000 --audit-events 1000000 --iterations 300",
        "audit": "--runs 3",
        "web": "--calls 300",
        "throughput": (
            "--requests 500 --roles 1 --workers 2 --bucket-capacity 200 --refill-per-second 10"
        ),
        "expiry": (
            "--identities 10000 --expiring-share 0.1 --workers 2 --concurrency 8 "
            "--bucket-capacity 200 --refill-per-second 10"
        ),
        "multisub": (
            "--requests 1500 --workers 6 --split 60,30,10 --bucket-capacity 40 "
            "--refill-per-second 4"
        ),
        "drift": "--identities 300 --roles 3",
    },
    "quick": {
        "provisioning": "--latency-ms 100 --runs 2",
        "api": "--requests 2000 --audit-events 10000 --iterations 20 --warmup 5",
        "audit": "--runs 2",
        "web": "--calls 20",
        "throughput": (
            "--requests 40 --roles 1 --workers 2 --bucket-capacity 10 --refill-per-second 5"
        ),
        "expiry": (
            "--identities 500 --expiring-share 0.1 --workers 1 --concurrency 4 "
            "--bucket-capacity 10 --refill-per-second 5"
        ),
        "multisub": (
            "--requests 60 --workers 3 --split 60,30,10 --bucket-capacity 10 --refill-per-second 2"
        ),
        "drift": "--identities 30 --roles 3 --probes 1",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, not the real figures")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_SERVER_URL,
        help="the PostgreSQL server; each benchmark uses a database of its own on it",
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    parser.add_argument("--reseed", action="store_true", help="re-create the API database")
    parser.add_argument("--output-dir", default="")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rebuild report.md and the plots from the output folder's raw/",
    )
    args = parser.parse_args()

    mode = "quick" if args.quick else "full"
    output_dir = Path(
        args.output_dir or ROOT / "benchmarks" / "results" / ("quick" if args.quick else "")
    )
    raw_dir = output_dir / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        rebuild(output_dir)
        return
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(selected) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    api_db = database_url(args.database_url, "bench_api_quick" if args.quick else "bench_api")
    databases = {
        "provisioning": ["--database-url", database_url(args.database_url, "bench_provisioning")],
        "api": ["--database-url", api_db] + (["--reseed"] if args.reseed else []),
        "audit": ["--database-url", api_db],
        "web": ["--database-url", api_db],
        "throughput": [
            "--database-url",
            database_url(args.database_url, "bench_throughput"),
            "--redis-url",
            args.redis_url,
        ],
        "expiry": [
            "--database-url",
            database_url(args.database_url, "bench_expiry"),
            "--redis-url",
            args.redis_url,
        ],
        "multisub": [
            "--database-url",
            database_url(args.database_url, "bench_multisub"),
            "--redis-url",
            args.redis_url,
        ],
        "drift": [
            "--database-url",
            database_url(args.database_url, "bench_drift"),
            "--redis-url",
            args.redis_url,
        ],
    }
    outputs = {
        "provisioning": "provisioning-postgresql.md",
        "api": "api.md",
        "audit": "audit.md",
        "web": "web.md",
        "throughput": "throughput.md",
        "expiry": "expiry.md",
        "multisub": "multisub.md",
        "drift": "drift.md",
    }
    started_at = datetime.now(UTC)
    machine = machine_info(
        database_url=database_url(args.database_url, "postgres"), redis_url=args.redis_url
    )
    results: dict[str, Any] = {}
    durations: dict[str, float] = {}
    failures: dict[str, str] = {}
    # The API benchmark seeds the database that audit and web read: keep that order.
    for name in [name for name in BENCHMARKS if name in selected]:
        json_path = raw_dir / f"{name}.json"
        json_path.unlink(missing_ok=True)
        command = [
            sys.executable,
            str(ROOT / "benchmarks" / f"{name}_bench.py"),
            *shlex.split(SIZES[mode][name]),
            *databases[name],
            "--output",
            str(output_dir / outputs[name]),
            "--json",
            str(json_path),
        ]
        print(f"\n=== {name}: {shlex.join(command)}", flush=True)
        began = time.perf_counter()
        with (raw_dir / f"{name}.log").open("w") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert process.stdout is not None
            for line in process.stdout:
                sys.stdout.write(line)
                log.write(line)
            code = process.wait()
        durations[name] = time.perf_counter() - began
        if code != 0 or not json_path.exists():
            failures[name] = f"exit code {code}; see {raw_dir / f'{name}.log'}"
            print(f"=== {name} FAILED ({failures[name]})", flush=True)
            continue
        results[name] = json.loads(json_path.read_text())

    machine["load_average_end"] = machine_info()["load_average"]
    argv = " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    run = {
        "mode": mode,
        "command": f".venv/bin/python benchmarks/run.py {argv}".strip(),
        "started_at": started_at.isoformat(),
        "machine": machine,
        "durations": durations,
        "failures": failures,
    }
    (raw_dir / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    print(f"\nreport: {rebuild(output_dir)}")
    if failures:
        raise SystemExit(f"failed: {', '.join(failures)}")


def rebuild(output_dir: Path) -> Path:
    """report.md and the plots from raw/run.json and raw/<benchmark>.json."""
    raw_dir = output_dir / "raw"
    run = json.loads((raw_dir / "run.json").read_text())
    # A run.json written by hand may name other files (e.g. the 10x API run) and say where each
    # benchmark's figures come from when they were not all taken by one run.py.
    sources = {name: run.get("sources", {}).get(name, f"{name}.json") for name in BENCHMARKS}
    results = {
        name: json.loads((raw_dir / sources[name]).read_text())
        for name in BENCHMARKS
        if (raw_dir / sources[name]).exists() and name not in run["failures"]
    }
    return write_report(
        output_dir,
        mode=run["mode"],
        command=run["command"],
        started_at=datetime.fromisoformat(run["started_at"]),
        machine=run["machine"],
        results=results,
        durations=run["durations"],
        failures=run["failures"],
        notes=run.get("notes", []),
    )


if __name__ == "__main__":
    main()
