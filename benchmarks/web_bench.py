"""Peak memory of the web process serving the REST API on the large database, beside an idle one.

    .venv/bin/python benchmarks/web_bench.py \\
        [--database-url postgres://postgres@127.0.0.1:5432/bench_api] [--calls 300] [--skip-export]

Uses the database api_bench.py seeds; where it is missing or empty (a fresh machine, or
`run.py --only web`), this seeds it the same way first (--requests, --audit-events: api_bench's
defaults). Starts two gunicorn servers exactly as
docker-compose.yml does (`gunicorn portal.wsgi`, gthread workers, default timeout), each with
--gunicorn-workers workers (1 by default, so one worker's peak is the figure):

- busy: serves --calls rounds of the API benchmark's reads over HTTP with Bearer tokens (the
  first page of the request list as an approver, a request's detail, its manifests as YAML,
  the audit log page) and of the web UI's audit page as an auditor (after one recorded full
  check of the chain, as the schedule makes), then one full audit export (JSON Lines streamed
  over the whole trail);
- idle (the baseline): started the same way at the same time, asked only `/healthz`.

Reports peak RSS (VmHWM) of each gunicorn master and worker, the median HTTP time per call
(client side, loopback) and how the export went. Writes benchmarks/results/web.md (--output)
and --json PATH for benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common import (
    API_DATABASE_URL,
    ROOT,
    PeakSampler,
    Started,
    median,
    prepare_database,
    publish,
    start_process,
    venv_executable,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    name: str, port: int, workers: int, threads: int, timeout: int, work: Path
) -> Started:
    server = start_process(
        name,
        [
            venv_executable("gunicorn"),
            "portal.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--timeout",
            str(timeout),
        ],
        os.environ.copy(),
        work / f"{name}.log",
    )
    server.wait_for_log("Booting worker")
    return server


def wait_healthy(base: str, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{base} did not answer /healthz")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=API_DATABASE_URL)
    parser.add_argument("--calls", type=int, default=300, help="rounds of the five reads")
    parser.add_argument(
        "--requests", type=int, default=100_000, help="the seed's size, if it must seed"
    )
    parser.add_argument("--audit-events", type=int, default=1_000_000)
    parser.add_argument("--gunicorn-workers", type=int, default=1)
    parser.add_argument("--gunicorn-threads", type=int, default=4, help="as in compose")
    parser.add_argument(
        "--gunicorn-timeout", type=int, default=30, help="gunicorn's default, as in compose"
    )
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "web.md"))
    parser.add_argument("--json", default="", help="also write the figures as JSON here")
    args = parser.parse_args()

    from api_bench import configure_environment, forget_anchors, seed, seeded_count

    if prepare_database(args.database_url):
        forget_anchors(args.database_url)  # a new chain, a new key (as api_bench.py does)
    configure_environment(args.database_url)
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    os.environ["LOG_LEVEL"] = "WARNING"
    work = Path(tempfile.mkdtemp(prefix="wip-web-"))
    # Served as in production: hashed static files collected first, as the Dockerfile does.
    os.environ["STATIC_ROOT"] = str(work / "static")
    import django

    django.setup()
    import requests
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if seeded_count() == 0:
        print(f"seeding {args.requests:,} requests and {args.audit_events:,} audit events …")
        seed(args.requests, args.audit_events)

    from accounts.tokens import api_token_create
    from identities.models import AuditEvent, IdentityRequest

    def token(username: str) -> str:
        user = User.objects.get(username=username)
        return api_token_create(user=user, name="web-bench", scopes=["read"], expires_at=None)[1]

    approver, auditor = token("bench-approver"), token("bench-auditor")
    # The audit page is a web UI page: it takes a session, made here as a sign-in would.
    ui_session = session_for("bench-auditor")
    # The page shows the newest full check and walks only the rows added since (the tokens'
    # audit rows, at least): record one full check first, as the hourly schedule would.
    call_command("audit_verify", verbosity=0)
    calls = args.calls
    all_ids = list(IdentityRequest.objects.order_by("?").values_list("pk", flat=True)[:calls])
    ready_ids = list(
        IdentityRequest.objects.filter(status="ready")
        .order_by("?")
        .values_list("pk", flat=True)[:calls]
    )
    audit_rows = AuditEvent.objects.count()

    call_command("collectstatic", "--no-input", verbosity=0)
    busy_port, idle_port = free_port(), free_port()
    servers = [
        start_gunicorn(
            name, port, args.gunicorn_workers, args.gunicorn_threads, args.gunicorn_timeout, work
        )
        for name, port in (("busy", busy_port), ("idle", idle_port))
    ]
    samplers = [PeakSampler(server.popen.pid) for server in servers]
    for sampler in samplers:
        sampler.start()
    try:
        busy, idle = f"http://127.0.0.1:{busy_port}", f"http://127.0.0.1:{idle_port}"
        wait_healthy(busy)
        wait_healthy(idle)
        session = requests.Session()
        as_approver = {"Authorization": f"Bearer {approver}"}
        operations: dict[str, tuple[str, dict[str, str], list[float]]] = {
            "list": ("/api/v1/identity-requests/", as_approver, []),
            "detail": ("/api/v1/identity-requests/{id}/", as_approver, []),
            "manifests": (
                "/api/v1/identity-requests/{ready}/manifests/",
                {**as_approver, "Accept": "application/yaml"},
                [],
            ),
            "audit log page": (
                "/api/v1/audit-events/",
                {"Authorization": f"Bearer {auditor}"},
                [],
            ),
            "audit page (web UI)": (
                "/audit/",
                {"Cookie": f"{settings.SESSION_COOKIE_NAME}={ui_session}"},
                [],
            ),
        }
        rng = random.Random(3)
        for index in range(calls):
            for path, headers, times in rng.sample(list(operations.values()), k=len(operations)):
                url = busy + path.format(
                    id=all_ids[index % len(all_ids)], ready=ready_ids[index % len(ready_ids)]
                )
                started = time.perf_counter()
                response = session.get(url, headers=headers, timeout=60)
                times.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"GET {url}: {response.status_code} {response.text[:300]}")
        export = None if args.skip_export else run_export(session, busy, auditor, audit_rows)
        memory = {"busy": samplers[0].result(), "idle": samplers[1].result()}
    finally:
        for server in servers:
            server.stop()

    result = {
        "database": urlsplit(args.database_url).path.lstrip("/"),
        "calls": calls,
        "gunicorn_workers": args.gunicorn_workers,
        "gunicorn_threads": args.gunicorn_threads,
        "gunicorn_timeout": args.gunicorn_timeout,
        "audit_rows": audit_rows,
        "median_ms": {name: median(times) for name, (_, _, times) in operations.items()},
        "export": export,
        "memory": memory,
    }
    publish(args.output, render(result), args.json, result)


def session_for(username: str) -> str:
    """A signed-in session for `username` in the session store; returns its key."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User

    user = User.objects.get(username=username)
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return str(store.session_key)


def run_export(session: Any, base: str, auditor: str, audit_rows: int) -> dict[str, Any]:
    """Stream the whole audit export and count what arrived."""
    import requests

    started = time.perf_counter()
    received, lines, error = 0, 0, ""
    try:
        with session.get(
            f"{base}/api/v1/audit-events/export/",
            headers={"Authorization": f"Bearer {auditor}"},
            stream=True,
            timeout=600,
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_content(chunk_size=1 << 16):
                received += len(chunk)
                lines += chunk.count(b"\n")
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {
        "seconds": time.perf_counter() - started,
        "bytes": received,
        "lines": lines,
        "expected_lines": audit_rows,
        "complete": not error and lines >= audit_rows,
        "error": error[:300],
    }


def render(result: dict[str, Any]) -> str:
    memory = result["memory"]

    def mib(entry: dict[str, Any]) -> str:
        return ", ".join(map(str, entry["children_peak_mib"])) or "-"

    lines = [
        "# Web process memory",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on `{result['database']}` "
        f"({result['audit_rows']:,} audit events): two `gunicorn portal.wsgi` servers with "
        f"{result['gunicorn_workers']} gthread worker(s) of {result['gunicorn_threads']} threads "
        f"each and a {result['gunicorn_timeout']} s worker timeout (as docker-compose.yml), "
        "started the same way; the busy "
        f"one served {result['calls']} rounds of four API reads and the web UI's audit page "
        "over HTTP"
        + (" and one full audit export" if result["export"] else "")
        + ", the idle one only `/healthz`.",
        "",
        "Peak RSS (VmHWM) sampled every 0.5 s over the run, so a worker that gunicorn replaced "
        "keeps its peak in the list:",
        "",
        "| server | master peak RSS (MiB) | worker peak RSS (MiB) |",
        "|---|---:|---|",
        f"| busy | {memory['busy']['peak_mib']} | {mib(memory['busy'])} |",
        f"| idle (baseline) | {memory['idle']['peak_mib']} | {mib(memory['idle'])} |",
        "",
        "Median HTTP time per call, client side over loopback (ms): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in result["median_ms"].items())
        + ".",
        "",
    ]
    export = result["export"]
    if export:
        state = (
            "complete"
            if export["complete"]
            else f"INCOMPLETE ({export['lines']:,} of {export['expected_lines']:,} lines; "
            f"{export['error'] or 'stream ended early'})"
        )
        lines += [
            f"Audit export (JSON Lines): {export['bytes'] / 1e6:,.1f} MB, "
            f"{export['lines']:,} lines in {export['seconds']:.1f} s: {state}.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
