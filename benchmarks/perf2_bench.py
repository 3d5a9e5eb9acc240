"""Time to ready, before and after a change of the engine, side by side in one run.

    .venv/bin/python benchmarks/perf2_bench.py [--base main] [--rounds 3] [--runs 3] \\
        [--ks 1,5,10,20] [--latency-ms 100] \\
        [--database-url postgres://postgres@127.0.0.1:5432/]

`--base` (a git ref of this repository) is exported with `git archive` into a temporary
directory; this checkout's `provisioning_bench.py` and `phase_trace.py` are copied into it, so
both sides run the same benchmark code against their own engine. Each round runs
`provisioning_bench.py --no-baseline` once per side (the side that goes first alternates),
each in its own process, emulator and PostgreSQL database (`bench_perf2_before`,
`bench_perf2_after`). Times are pooled over the rounds (medians of every run); the breakdown
is the median of the rounds' medians. The load average is recorded at the start and the end.
Writes benchmarks/results/perf2.md (--output) and its figures beside it, raw/<its name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phase_trace
from common import ROOT, database_url
from provisioning_bench import PHASES

SIDES = ("before", "after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git ref of the code before")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="runs per k per round and side")
    parser.add_argument("--ks", default="1,5,10,20")
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "perf2.md"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wip-perf2-"))
    base = work / "before"
    base.mkdir()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", args.base], check=True, capture_output=True, text=True
    ).stdout.strip()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = work / "before.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--output", str(archive), commit], check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(base, filter="data")
    for name in ("provisioning_bench.py", "phase_trace.py", "common.py"):
        shutil.copy(ROOT / "benchmarks" / name, base / "benchmarks" / name)
    trees = {"before": base, "after": ROOT}

    load_start = os.getloadavg()
    raw: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for round_ in range(args.rounds):
        order = SIDES if round_ % 2 == 0 else tuple(reversed(SIDES))
        for side in order:
            out = work / f"{side}-{round_}.json"
            command = [
                sys.executable,
                "benchmarks/provisioning_bench.py",
                "--no-baseline",
                "--latency-ms",
                str(args.latency_ms),
                "--runs",
                str(args.runs),
                "--ks",
                args.ks,
                "--database-url",
                database_url(args.database_url, f"bench_perf2_{side}"),
                "--output",
                str(work / f"{side}-{round_}.md"),
                "--json",
                str(out),
            ]
            print(f"round {round_ + 1}/{args.rounds}: {side}", flush=True)
            subprocess.run(command, cwd=trees[side], check=True, stdout=subprocess.DEVNULL)
            raw[side].append(json.loads(out.read_text()))
    load_end = os.getloadavg()

    summary = {side: _summary(raw[side]) for side in SIDES}
    data = {
        "base": commit,
        "head": head,
        "latency_ms": args.latency_ms,
        "rounds": args.rounds,
        "runs": args.runs,
        "load_start": load_start,
        "load_end": load_end,
        "summary": summary,
        "raw": raw,
    }
    command_line = "  ".join(["benchmarks/perf2_bench.py", *sys.argv[1:]])
    text = render(data, command_line)
    Path(args.output).write_text(text)
    raw_dir = Path(args.output).parent / "raw"
    raw_dir.mkdir(exist_ok=True)
    # Named after the report (perf2.md: raw/perf2.json), so one comparison never overwrites
    # another's figures.
    (raw_dir / f"{Path(args.output).stem}.json").write_text(json.dumps(data, indent=2))
    print(text)


def _summary(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for n, first in enumerate(rounds[0]["results"]):
        per_round = [r["results"][n] for r in rounds]
        times = [t for row in per_round for t in row["portal_runs"]]
        rows.append(
            {
                "k": first["k"],
                "portal": statistics.median(times),
                "runs": len(times),
                "writes": sorted({w for row in per_round for w in row["writes"]}),
                "floor_runs": [t for row in per_round for t in row.get("floor_runs", [])],
                "approval": statistics.median(row["approval"] for row in per_round),
                "shares": {
                    c: statistics.median(row["shares"][c] for row in per_round)
                    for c in phase_trace.CATEGORIES
                },
                "phases": {
                    p: statistics.median(row["phases"][p] for row in per_round) for p in PHASES
                },
            }
        )
    return rows


def render(data: dict[str, Any], command_line: str) -> str:
    latency = data["latency_ms"] / 1000
    before, after = data["summary"]["before"], data["summary"]["after"]
    lines = [
        "# Performance, round 2: time to ready before and after, side by side",
        "",
        f"- date: {datetime.now(tz=UTC):%Y-%m-%d %H:%M UTC}; machine: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL",
        f"- before: `{data['base'][:10]}`; after: `{data['head'][:10]}` (this checkout, with "
        "its working tree)",
        f"- emulator latency L = {data['latency_ms']} ms per ARM request; {data['rounds']} rounds "
        f"x {data['runs']} runs per k and side, sides alternating which goes first; medians",
        f"- load average (1, 5, 15 min) at the start {[round(x, 2) for x in data['load_start']]}, "
        f"at the end {[round(x, 2) for x in data['load_end']]} (2 cores shared with other work: "
        "compare the ratios, not the absolute times)",
        f"- command: `.venv/bin/python {command_line}`",
        "",
        "## Approval → ready",
        "",
        "| k | before (s) | before / L | after (s) | after / L | after ÷ before | "
        "gap to 2·L before → after (ms) | measured floor / L before → after | "
        "portal's own work: minus its side's floor, before → after (ms) | "
        "ARM writes per identity before / after (2 + k) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for b, a in zip(before, after, strict=True):
        floor_b = statistics.median(b["floor_runs"]) if b["floor_runs"] else None
        floor_a = statistics.median(a["floor_runs"]) if a["floor_runs"] else None
        lines.append(
            f"| {b['k']} | {b['portal']:.3f} | {b['portal'] / latency:.2f} | "
            f"{a['portal']:.3f} | {a['portal'] / latency:.2f} | {a['portal'] / b['portal']:.2f} | "
            f"{(b['portal'] - 2 * latency) * 1000:+.0f} → {(a['portal'] - 2 * latency) * 1000:+.0f}"
            + (
                f" | {floor_b / latency:.2f} → {floor_a / latency:.2f} | "
                f"{(b['portal'] - floor_b) * 1000:+.0f} → {(a['portal'] - floor_a) * 1000:+.0f}"
                if floor_b is not None and floor_a is not None
                else " | - | -"
            )
            + f" | {b['writes']} / {a['writes']} |"
        )
    lines += [
        "",
        "The time includes the approval itself (the service's transaction, each side's own "
        "code), shown below as its median. The measured floor (`floor_identity` in "
        "benchmarks/common.py, per side: each side runs its own emulator) is the same SDK calls "
        "in the portal's order and nothing else: the identity's PUT, then its FIC and every "
        "role assignment at once on warm threads; it carries the emulator's and the SDK's own "
        "time per call, which 2·L leaves out (the emulator shares the portal's 2 cores, where "
        "real ARM's work runs on Azure's machines).",
        "",
        "## Where the time goes (ms, median of the rounds' medians)",
        "",
        "Exclusive shares of approval → ready, each instant counted once: ARM wait (a call in "
        "flight), audit chain-lock wait, audit write (statements on the audit table and the "
        "commits that held the lock), other DB (statements and commits), the rest (Python, "
        "thread hand-off); traced by `benchmarks/phase_trace.py`. The engine runs in the "
        "benchmark's process: no Celery hand-off on this path.",
        "",
        "| k | side | total | approval | ARM wait | audit lock wait | audit write | other DB | "
        "rest |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b, a in zip(before, after, strict=True):
        for side, row in (("before", b), ("after", a)):
            lines.append(
                f"| {row['k']} | {side} | {row['portal'] * 1000:.0f} | "
                f"{row['approval'] * 1000:.0f} | "
                + " | ".join(f"{row['shares'][c] * 1000:.1f}" for c in phase_trace.CATEGORIES)
                + " |"
            )
    lines += [
        "",
        "Phases on the wall clock (ms): before the identity's PUT is sent, the PUT, between its "
        "answer and the first child PUT, the children's PUTs (first sent → last answered), "
        "after the last answer (records, ready).",
        "",
        "| k | side | before PUT | identity PUT | between | children's PUTs | after |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for b, a in zip(before, after, strict=True):
        for side, row in (("before", b), ("after", a)):
            lines.append(
                f"| {row['k']} | {side} | "
                + " | ".join(f"{row['phases'][p] * 1000:.1f}" for p in PHASES)
                + " |"
            )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
