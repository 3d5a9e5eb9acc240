"""The resource picker's latency with 100,000 resources across 20 subscriptions in the
emulator's inventory, cache cold and warm, beside a bare Resource Graph query in the same run.

    .venv/bin/python benchmarks/picker_bench.py \\
        [--database-url postgres://postgres@127.0.0.1:5432/bench_picker] \\
        [--resources 100000] [--subscriptions 20] [--cold 20] [--warm 100] [--profile]

Uses its OWN database (default `bench_picker`, dropped and created again each run; the name
must contain "bench"), migrated and loaded with the demo data (seed_demo) against an emulator
the benchmark starts. The sandbox cluster may grant roles in --subscriptions subscriptions (the
sandbox one and generated ones), and team payments owns rg-payments in each. Then it registers
--resources resources spread evenly over the subscriptions and, in each, over 50 resource
groups: 2 % in rg-payments, 2 % in search's rg-search, 2 % in rg-tagged (tagged
owner-team=payments: the team's by its tag), the rest in 47 groups no team owns. Team payments
may use about 4 % of them, in every subscription: the portal's one Resource Graph query spans
all of them. In one process with DEBUG off, as alice (payments),
through Django's test client (server time; the emulator is a real HTTPS process), it times:

- type-ahead: GET /api/v1/resources/?team=payments&role=Key Vault Secrets User&q=…&limit=25,
  what the form's "Find a resource" box asks per (debounced) keystroke; q rotates over a few
  texts (matching many, some or no rows);
- form: GET /requests/new/ (the page; it no longer lists the team's resources);
- api: GET /api/v1/resources/ (first page of 50 of everything, with the total count);
- bare: the same Resource Graph query through the gateway (every page), no portal around it.

Cold = the Django cache cleared before each call (so Azure is asked); warm = the answer cached
(SCOPE_LOOKUP_CACHE_SECONDS). Reports p50/p95 in ms and the SQL queries per call (cold and
warm, at --resources and at a tenth of it: the count must not depend on the number of
resources). --profile prints a cProfile of one warm type-ahead call. Writes
benchmarks/results/picker.md (--output) and --json PATH.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_SERVER_URL,
    ROOT,
    database_url,
    drop_database,
    emulator_portal_env,
    machine_info,
    percentile,
    prepare_database,
    publish,
    sandbox_portal,
    start_emulator,
)
from cryptography.fernet import Fernet

sys.path.insert(0, str(ROOT))
SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"  # seed_demo's sandbox subscription
KINDS = (
    "Microsoft.KeyVault/vaults",
    "Microsoft.Storage/storageAccounts",
    "Microsoft.ServiceBus/namespaces",
    "Microsoft.DocumentDB/databaseAccounts",
)

# What the type-ahead's q rotates over: many matches, some, an id part, none ("" = the box opened
# with the arrow key before typing).
TYPED = ("", "vaul", "lvaul0001", "rg-tagged/providers", "zz-none")


def named(*calls: Callable[[], Any]) -> list[tuple[str, Callable[[], Any]]]:
    return [(call.__name__, call) for call in calls]


def subscriptions(count: int) -> list[str]:
    """The sandbox subscription, then count - 1 generated ones (stable across runs)."""
    generated = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"picker-bench/{n}")) for n in range(1, count)]
    return [SUBSCRIPTION, *generated]


def inventory(count: int, prefix: str, subs: list[str]) -> list[dict[str, Any]]:
    """`count` resources, even over `subs` and 50 groups a subscription: rg-payments, rg-search,
    rg-tagged (tagged owner-team=payments) and 47 groups nobody owns."""
    rows: list[dict[str, Any]] = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        sub = subs[n % len(subs)]
        share = (n // len(subs)) % 50
        group = {0: "rg-payments", 1: "rg-search", 2: "rg-tagged"}.get(share, f"rg-app{share:02}")
        tags = {"owner-team": "payments"} if group == "rg-tagged" else {}
        name = f"{prefix}{kind.rsplit('/', 1)[-1][:4].lower()}{n:06}"
        rows.append(
            {
                "id": f"/subscriptions/{sub}/resourceGroups/{group}/providers/{kind}/{name}",
                "location": "westeurope",
                "tags": tags,
            }
        )
    return rows


def register(emulator: Any, rows: list[dict[str, Any]], batch: int = 10_000) -> None:
    for start in range(0, len(rows), batch):
        emulator.control("POST", "resources", {"resources": rows[start : start + batch]})


def timed(call: Callable[[], Any], before: Callable[[], Any] | None, times: int) -> list[float]:
    samples: list[float] = []
    for _ in range(times):
        if before is not None:
            before()
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(percentile(samples, 0.5), 1),
        "p95_ms": round(percentile(samples, 0.95), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=database_url(DEFAULT_SERVER_URL, "bench_picker"))
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=20)
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--warm", type=int, default=100)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/picker.md"))
    parser.add_argument("--json", default="")
    parser.add_argument("--profile", action="store_true", help="print a profile of a warm form")
    args = parser.parse_args()

    prepare_database(args.database_url, reseed=True)
    work = Path(tempfile.mkdtemp(prefix="picker-bench-"))
    emulator = start_emulator(work / "emulator")
    try:
        os.environ.update(emulator_portal_env(emulator, args.database_url, work))
        os.environ.update(
            {
                "DEBUG": "0",
                "SECRET_KEY": os.environ.get("SECRET_KEY") or uuid.uuid4().hex * 2,
                "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                "ALLOWED_HOSTS": "testserver,localhost",
                "SECURE_SSL_REDIRECT": "0",
                "LOG_LEVEL": "ERROR",
                "API_THROTTLE_USER": "100000000/min",
                "SCOPE_EXISTENCE_CHECK": "1",
                "STATIC_ROOT": str(work / "static"),
            }
        )
        machine = machine_info(database_url=args.database_url)
        alice, _approver, _cluster = sandbox_portal()
        from django.core.management import call_command

        call_command("collectstatic", "--no-input", verbosity=0)  # DEBUG off: hashed names
        data = run(emulator, alice, args)
        data["machine"] = machine
        data["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        emulator.stop()
        drop_database(args.database_url)
    publish(args.output, report(data, args), args.json, data)


def run(emulator: Any, alice: Any, args: argparse.Namespace) -> dict[str, Any]:
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from identities.models import Cluster, ResourceGroupOwnership, Team
    from identities.services import config_object_save
    from provisioning.azure import get_gateway
    from provisioning.resource_graph import team_query

    subs = subscriptions(args.subscriptions)
    cluster = Cluster.objects.get(name="aks-sandbox")
    cluster.allowed_scope_subscriptions = subs
    config_object_save(actor=None, instance=cluster)
    payments = Team.objects.get(name="payments")
    for sub in subs:
        if not ResourceGroupOwnership.objects.filter(
            subscription_id=sub, resource_group="rg-payments"
        ).exists():
            config_object_save(
                actor=None,
                instance=ResourceGroupOwnership(
                    team=payments, subscription_id=sub, resource_group="rg-payments"
                ),
            )
    client = Client()
    client.force_login(alice)
    groups = [
        (sub.lower(), group)
        for sub, group in ResourceGroupOwnership.objects.filter(team__name="payments").values_list(
            "subscription_id", "resource_group"
        )
    ]
    query = team_query(groups, "owner-team", "payments")

    def form() -> None:
        response = client.get("/requests/new/")
        assert response.status_code == 200, response.status_code
        assert b'role="combobox"' in response.content

    texts = iter(itertools.cycle(TYPED))

    def typeahead(text: str | None = None) -> int:
        query = {"team": "payments", "role": "Key Vault Secrets User", "limit": "25"}
        typed = next(texts) if text is None else text
        response = client.get("/api/v1/resources/", {**query, "q": typed})
        assert response.status_code == 200, response.content[:500]
        assert len(response.json()["results"]) <= 25
        return int(response.json()["count"])

    def api() -> int:
        response = client.get("/api/v1/resources/")
        assert response.status_code == 200, response.content[:500]
        return int(response.json()["count"])

    def bare() -> int:
        gateway, token, rows = get_gateway(), None, 0
        while True:
            page = gateway.query_resources(query=query, subscriptions=subs, skip_token=token)
            rows += len(page.rows)
            token = page.skip_token
            if not token:
                return rows

    def queries(call: Callable[[], Any], *, cold: bool) -> int:
        if cold:
            cache.clear()
        else:
            call()
        with CaptureQueriesContext(connection) as captured:
            call()
        return len(captured.captured_queries)

    small = max(1, args.resources // 10)
    started = time.perf_counter()
    register(emulator, inventory(small, "s", subs))
    query_counts: dict[str, dict[str, int]] = {
        f"{name}-{state}": {str(small): queries(call, cold=state == "cold")}
        for name, call in named(form, typeahead, api)
        for state in ("cold", "warm")
    }
    register(emulator, inventory(args.resources - small, "l", subs))
    registering_s = round(time.perf_counter() - started, 1)
    listed = bare()
    for name, call in named(form, typeahead, api):
        for state in ("cold", "warm"):
            query_counts[f"{name}-{state}"][str(args.resources)] = queries(
                call, cold=state == "cold"
            )
    api_count = api()

    typeahead_counts = {text: typeahead(text) for text in TYPED}

    if args.profile:
        import cProfile
        import pstats

        typeahead()
        profiler = cProfile.Profile()
        profiler.runcall(typeahead)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)

    # Interleaved round by round, so the shared machine's load weighs on each alike: first the
    # cold calls beside the bare query, then (the cache filled, each built list once) the warm.
    cold_plan: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]] = {
        "bare": (bare, None),
        "typeahead-cold": (typeahead, cache.clear),
        "form-cold": (form, cache.clear),
        "api-cold": (api, cache.clear),
    }
    warm_plan: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]] = {
        "typeahead-warm": (typeahead, None),
        "form-warm": (form, None),
        "api-warm": (api, None),
    }
    samples: dict[str, list[float]] = {name: [] for name in (*cold_plan, *warm_plan)}
    for _ in range(args.cold):
        for name, (call, before) in cold_plan.items():
            samples[name] += timed(call, before, 1)
    for text in TYPED:
        typeahead(text)
    api()
    for _ in range(args.warm):
        for name, (call, before) in warm_plan.items():
            samples[name] += timed(call, before, 1)
    results = {name: summary(taken) for name, taken in samples.items()}
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "resources": args.resources,
        "subscriptions": args.subscriptions,
        "registering_s": registering_s,
        "listed_for_payments": listed,
        "api_count": api_count,
        "typeahead_counts": typeahead_counts,
        "results": results,
        "sql_queries": query_counts,
        "graph_queries_in_log": sum(
            1 for entry in emulator.log() if entry.get("op") == "graph.query"
        ),
    }


def report(data: dict[str, Any], args: argparse.Namespace) -> str:
    results = data["results"]
    lines = [
        "# Resource picker latency",
        "",
        f"Run {data['date']} on {data['machine']['cpu_model']} "
        f"({data['machine']['cpus']} cores, Python {data['machine']['python']}, PostgreSQL "
        f"{data['machine']['postgresql']}); load average {data['machine']['load_average']} at "
        f"the start, {data['load_average_end']} at the end.",
        "",
        "Command: `.venv/bin/python benchmarks/picker_bench.py "
        f"--resources {args.resources} --subscriptions {args.subscriptions} --cold {args.cold} "
        f"--warm {args.warm}`",
        "",
        f"{data['resources']} resources across {data['subscriptions']} subscriptions in the "
        f"emulator's inventory (plus the demo data; registered in {data['registering_s']} s); team "
        f"payments may use {data['listed_for_payments']} of them (its resource group and the "
        f"ones tagged for it), the API's `count` says {data['api_count']}.",
        "",
        "The type-ahead (role Key Vault Secrets User, at most 25 shown) counted "
        f"{data['typeahead_counts']} matches for the texts it rotates over.",
        "",
        "| what | cache | calls | p50 ms | p95 ms |",
        "|---|---|---|---|---|",
        "| bare Resource Graph query (gateway, every page) | n/a | "
        f"{results['bare']['n']} | {results['bare']['p50_ms']} | {results['bare']['p95_ms']} |",
    ]
    for name, label in (
        ("typeahead", "type-ahead GET /api/v1/resources/?team&role&q&limit=25"),
        ("form", "GET /requests/new/"),
        ("api", "GET /api/v1/resources/ (first 50 of all)"),
    ):
        for state in ("cold", "warm"):
            row = results[f"{name}-{state}"]
            lines.append(f"| {label} | {state} | {row['n']} | {row['p50_ms']} | {row['p95_ms']} |")
    lines += [
        "",
        "SQL queries per call, at a tenth of the resources and at all of them (constant in the "
        "number of resources):",
        "",
        "| call | " + " | ".join(f"{n} resources" for n in data["sql_queries"]["api-warm"]) + " |",
        "|---|" + "---|" * len(data["sql_queries"]["api-warm"]),
    ]
    for key, counts in data["sql_queries"].items():
        lines.append(f"| {key} | " + " | ".join(str(v) for v in counts.values()) + " |")
    lines += [
        "",
        "Cold: the Django cache cleared before each call, so the portal asks Resource Graph "
        "(one query, paged by 1,000 rows) and builds the list; warm: Azure's answer comes from "
        "the cache (SCOPE_LOOKUP_CACHE_SECONDS). The bare query is the floor of a cold call. "
        "The form page asks Azure nothing (cold and warm differ only by the cleared cache's "
        "other entries, e.g. the session).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
