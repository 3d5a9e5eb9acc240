"""Notifications at a burst: 1 000 approvals, ~10 000 outbox rows, delivered by real workers.

    .venv/bin/python benchmarks/notify_bench.py [--approvals 1000] [--teammates 3] \\
        [--endpoints 2] [--workers 2] [--concurrency 2] \\
        [--database-url postgres://postgres@127.0.0.1:5432/bench_notify] \\
        [--redis-url redis://127.0.0.1:6379/10]

On its own PostgreSQL database (re-created; its name must contain "bench") with the demo seed:
team payments has alice and --teammates more people, every one with email on (immediate), and
--endpoints team webhooks (half Standard Webhooks, half Slack format) pointing at an HTTP
receiver this script starts on 127.0.0.1 (admitted by WEBHOOK_ALLOWED_CIDRS); an aiosmtpd SMTP
server it starts takes the mail. --workers `celery worker` processes (--concurrency pool
processes each) on a Redis queue of their own deliver; only the outbox's work is sent to them
(the approvals' provisioning is not enqueued: no Azure is involved, and every figure is about
notifications).

2 x --approvals requests are filed first (with NOTIFICATIONS_ENABLED off, so filing leaves no
rows); then the burst approves them in pairs, one with NOTIFICATIONS_ENABLED on and one with it
off, alternating, so both sides of the comparison run on the same loaded machine at the same
moment. Each "on" approval writes an inbox and an email row per team member and a row per
endpoint (with 4 members and 2 endpoints: 10 rows, 6 deliveries).

Measured:
- the approval path (identity_request_approve: policy re-check, state change, audit row, the
  outbox rows, commit, the enqueue on commit), p50/p95/max, outbox on vs off;
- delivery latency of each email and webhook row: its delivered_at minus the moment its
  approval returned (the commit is the call's last act besides the enqueue), p50/p95/max;
- throughput: deliveries per second from the first approval's commit to the last delivery;
- that every row was delivered exactly once: messages the SMTP server accepted and POSTs the
  receiver got, against the rows.

Writes benchmarks/results/notify.md (--output) and --json PATH.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_REDIS_URL,
    DEFAULT_SERVER_URL,
    ROOT,
    Started,
    database_url,
    drop_database,
    machine_info,
    percentile,
    prepare_database,
    publish,
    start_process,
    venv_executable,
)
from cryptography.fernet import Fernet

TARGET_SHARE = 1.10  # approval p95 with the outbox within 10 % of without


class Receiver:
    """A webhook receiver that answers 200 at once and counts each delivery by webhook-id (or,
    for the unsigned Slack body, by its body)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: Counter[str] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                key = self.headers.get("webhook-id") or f"{self.path}:{body.decode()}"
                with receiver.lock:
                    receiver.received[key] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Smtp:
    """aiosmtpd on a free port, counting accepted messages by Message-ID."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.lock = threading.Lock()
        self.received: Counter[str] = Counter()
        smtp = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                import email

                message = email.message_from_bytes(envelope.content)
                with smtp.lock:
                    smtp.received[str(message["Message-ID"])] += len(envelope.rcpt_tos)
                return "250 Message accepted for delivery"

        with socket.socket() as probe:  # a free port (aiosmtpd checks its own by connecting)
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def start_worker(name: str, queue: str, concurrency: int, env: dict[str, str], work: Path) -> Any:
    return start_process(
        name,
        [
            venv_executable("celery"),
            "-A",
            "portal",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            f"--hostname={name}@%h",
            "--without-mingle",
            "--without-gossip",
            "-Q",
            queue,
        ],
        {**env, "CELERY_QUEUE": queue, "LOG_LEVEL": "INFO"},
        work / f"{name}.log",
    )


def seed(teammates: int, endpoints: int, receiver: Receiver) -> dict[str, Any]:
    """The demo seed (alice in payments, sam an approver), `teammates` more payments members,
    everyone's email set, `endpoints` webhooks of team payments at the receiver."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from identities import roles
    from identities.models import Cluster, Team, TeamMembership
    from identities.services import webhook_endpoint_create

    call_command("migrate", verbosity=0)
    with open(os.devnull, "w") as quiet:
        call_command(
            "seed_demo",
            "--force",
            "--oidc-issuer-url",
            "https://westeurope.oic.prod-aks.azure.com/t/bench/",
            stdout=quiet,
            stderr=quiet,
        )
    users = get_user_model().objects
    team = Team.objects.get(name="payments")
    requesters = Group.objects.get(name=roles.REQUESTERS)
    for n in range(teammates):
        user = users.create_user(f"mate{n}", email=f"mate{n}@example.invalid")
        user.groups.add(requesters)
        TeamMembership.objects.create(team=team, user=user)
    alice = users.get(username="alice")
    for endpoint in range(endpoints):
        webhook_endpoint_create(
            actor=alice,
            team=team,
            url=receiver.url(f"hook{endpoint}"),
            events=["request_approved"],
            format="slack" if endpoint % 2 else "standard",
        )
    return {
        "alice": alice,
        "sam": users.get(username="sam"),
        "cluster": Cluster.objects.get(name="aks-sandbox"),
        "members": TeamMembership.objects.filter(team=team).count(),
    }


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "max_ms": round(max(values), 1),
    }


def run(args: argparse.Namespace, env: dict[str, str], work: Path) -> dict[str, Any]:
    receiver = Receiver()
    smtp = Smtp()
    os.environ["EMAIL_PORT"] = str(smtp.port)
    env["EMAIL_PORT"] = str(smtp.port)
    workers: list[Started] = []
    try:
        return _run(args, env, work, receiver, smtp, workers)
    finally:
        for worker in workers:
            worker.stop()
        receiver.stop()
        smtp.stop()


def _run(
    args: argparse.Namespace,
    env: dict[str, str],
    work: Path,
    receiver: Receiver,
    smtp: Smtp,
    workers: list[Started],
) -> dict[str, Any]:
    cast = seed(args.teammates, args.endpoints, receiver)
    from celery import current_app
    from django.conf import settings
    from django.test import override_settings

    from identities import work as domain_work
    from identities.models import DeliveryStatus, Notification, NotificationChannel
    from identities.policy import RequestDraft, RoleDraft
    from identities.services import identity_request_approve, identity_request_create

    cluster = cast["cluster"]
    print(f"filing {2 * args.approvals} requests …", flush=True)
    pending = []
    with override_settings(NOTIFICATIONS_ENABLED=False):
        for n in range(2 * args.approvals + args.drain):
            name = f"nb-{n}"
            draft = RequestDraft(
                kind="new",
                team="payments",
                cluster=cluster.name,
                namespace="payments",
                service_account=name,
                app_name=name,
                roles=(
                    RoleDraft(
                        "Key Vault Secrets User",
                        f"/subscriptions/{cluster.subscription_id}/resourceGroups/rg-payments"
                        f"/providers/Microsoft.KeyVault/vaults/kv-nb-{n}",
                    ),
                ),
                justification="Benchmark run.",
            )
            pending.append(identity_request_create(requester=cast["alice"], draft=draft))
    assert not Notification.objects.exists()

    queue = env["CELERY_QUEUE"]
    for index in range(args.workers):
        workers.append(start_worker(f"notify{index}", queue, args.concurrency, env, work))
    for worker in workers:
        worker.wait_for_log(" ready.", timeout=180)

    skipped: Counter[str] = Counter()

    def send(item: domain_work.Work, task_args: tuple[object, ...]) -> object:
        if item == domain_work.Work.DELIVER_NOTIFICATIONS:
            return current_app.send_task(str(item), args=list(task_args))
        skipped[str(item)] += 1  # provisioning: not part of this benchmark
        return None

    on_ms: list[float] = []
    off_ms: list[float] = []
    committed: dict[int, float] = {}  # request id → when its "on" approval returned (epoch s)
    print(f"approving {2 * args.approvals} requests (half with the outbox) …", flush=True)
    with domain_work.sending_to(send):
        for n in range(args.approvals):
            # Alternate which side goes first, so neither always follows the other's commit.
            pair = [(pending[2 * n], True), (pending[2 * n + 1], False)]
            for identity_request, enabled in pair if n % 2 == 0 else reversed(pair):
                with override_settings(NOTIFICATIONS_ENABLED=enabled):
                    started = time.perf_counter()
                    identity_request_approve(
                        identity_request=identity_request, approver=cast["sam"]
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                (on_ms if enabled else off_ms).append(elapsed)
                if enabled:
                    committed[identity_request.pk] = time.time()
    burst_seconds = (max(committed.values()) - min(committed.values())) if committed else 0.0
    assert settings.NOTIFICATIONS_ENABLED

    deliverable = Notification.objects.filter(
        channel__in=(NotificationChannel.EMAIL, NotificationChannel.WEBHOOK)
    )
    total = deliverable.count()
    print(f"{Notification.objects.count()} rows, {total} to deliver; waiting …", flush=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        left = deliverable.filter(status=DeliveryStatus.PENDING).count()
        if not left:
            break
        time.sleep(0.5)
    rows = list(
        deliverable.values_list("identity_request_id", "channel", "status", "delivered_at", "key")
    )
    statuses = Counter(status for _, _, status, _, _ in rows)
    latency: dict[str, list[float]] = {"email": [], "webhook": [], "all": []}
    for request_id, channel, status, delivered_at, _ in rows:
        if status == DeliveryStatus.DELIVERED and delivered_at is not None:
            ms = (delivered_at.timestamp() - committed[request_id]) * 1000
            latency[channel].append(ms)
            latency["all"].append(ms)
    delivered_times = [d.timestamp() for _, _, s, d, _ in rows if d is not None]
    span = max(delivered_times) - min(committed.values()) if delivered_times else 0.0
    paired = [on - off for on, off in zip(on_ms, off_ms, strict=True)]
    rows_burst = Notification.objects.count()

    # Capacity: a backlog (the outbox rows of --drain approvals, their delivery messages held
    # back as during a broker or worker outage) released at once to the same workers.
    held: list[tuple[object, ...]] = []

    def hold(item: domain_work.Work, task_args: tuple[object, ...]) -> object:
        if item == domain_work.Work.DELIVER_NOTIFICATIONS:
            held.append(task_args)
        return None

    backlog = pending[2 * args.approvals :]
    print(f"backlog of {len(backlog)} approvals' deliveries …", flush=True)
    with domain_work.sending_to(hold):
        for identity_request in backlog:
            identity_request_approve(identity_request=identity_request, approver=cast["sam"])
    backlog_rows = deliverable.filter(identity_request_id__in=[r.pk for r in backlog])
    released = time.time()
    for task_args in held:
        current_app.send_task(str(domain_work.Work.DELIVER_NOTIFICATIONS), args=list(task_args))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and backlog_rows.filter(status=DeliveryStatus.PENDING):
        time.sleep(0.2)
    drained = [d.timestamp() for d in backlog_rows.values_list("delivered_at", flat=True) if d]
    drain_seconds = (max(drained) - released) if drained else 0.0
    info_end = [round(x, 2) for x in os.getloadavg()]
    all_rows = list(deliverable.values_list("channel", flat=True))
    email_rows = sum(1 for _, channel, _, _, _ in rows if channel == NotificationChannel.EMAIL)
    webhook_rows = len(rows) - email_rows
    duplicates = {
        "email_rows": all_rows.count(NotificationChannel.EMAIL),
        "webhook_rows": all_rows.count(NotificationChannel.WEBHOOK),
        "smtp_messages": sum(smtp.received.values()),
        "smtp_duplicates": sum(c - 1 for c in smtp.received.values() if c > 1),
        "webhook_posts": sum(receiver.received.values()),
        "webhook_duplicates": sum(c - 1 for c in receiver.received.values() if c > 1),
    }
    return {
        "approvals": args.approvals,
        "members": cast["members"],
        "endpoints": args.endpoints,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "rows_total": rows_burst,
        "deliverable": total,
        "email_rows": email_rows,
        "webhook_rows": webhook_rows,
        "statuses": dict(statuses),
        "approval_on": summary(on_ms),
        "approval_off": summary(off_ms),
        "approval_paired_difference": summary(paired),
        "drain": {
            "approvals": len(backlog),
            "rows": backlog_rows.count(),
            "delivered": len(drained),
            "seconds": round(drain_seconds, 1),
            "per_second": round(len(drained) / drain_seconds, 1) if drain_seconds else 0.0,
        },
        "burst_seconds": round(burst_seconds, 1),
        "latency": {k: summary(v) for k, v in latency.items() if v},
        "span_seconds": round(span, 1),
        "throughput_per_second": round(len(delivered_times) / span, 1) if span else 0.0,
        "skipped_work": dict(skipped),
        "exactly_once": duplicates,
        "load_average_end": info_end,
    }


def render(result: dict[str, Any], info: dict[str, Any], command: str) -> str:
    on, off = result["approval_on"], result["approval_off"]
    ratio = on["p95_ms"] / off["p95_ms"] if off["p95_ms"] else float("inf")
    once = result["exactly_once"]
    drain = result["drain"]
    lat = result["latency"]
    return "\n".join(
        [
            "# Notifications: a burst of approvals through the outbox",
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {info['cpus']} CPUs "
            f"({info['cpu_model']}), PostgreSQL {info['postgresql']}, Python {info['python']}; "
            f"load average at start {info['load_average']}, at end "
            f"{result['load_average_end']} (a shared machine: other engineers' work was "
            "running, so absolute figures are noisy; the on/off comparison is interleaved "
            "pair by pair and shares the noise).",
            "",
            f"Command: `{command}`",
            "",
            f"Set-up: team payments with {result['members']} members, email on (immediate) "
            f"for all; {result['endpoints']} team webhooks (Standard Webhooks and Slack format) "
            "to a local HTTP receiver; aiosmtpd as the SMTP server; "
            f"{result['workers']} `celery worker` processes x {result['concurrency']} pool "
            "processes delivering. Provisioning was not enqueued (no Azure in this run).",
            "",
            f"Burst: {2 * result['approvals']} approvals in {result['burst_seconds']} s, "
            f"{result['approvals']} with the outbox on. Outbox rows written: "
            f"{result['rows_total']} (inbox, email, webhook), of which "
            f"{result['deliverable']} to deliver ({result['email_rows']} emails, "
            f"{result['webhook_rows']} webhooks). Final statuses: {result['statuses']}.",
            "",
            "## The approval path, outbox on vs off",
            "",
            "| outbox | approvals | p50 ms | p95 ms | max ms |",
            "|---|---|---|---|---|",
            f"| on | {on['n']} | {on['p50_ms']} | {on['p95_ms']} | {on['max_ms']} |",
            f"| off | {off['n']} | {off['p50_ms']} | {off['p95_ms']} | {off['max_ms']} |",
            "",
            f"p95 on / off = {ratio:.2f}; target ≤ {TARGET_SHARE:.2f}: "
            f"**{'met' if ratio <= TARGET_SHARE else 'MISSED'}**. Per pair (the on approval "
            "minus the off one next to it): median "
            f"{result['approval_paired_difference']['p50_ms']} ms, p95 "
            f"{result['approval_paired_difference']['p95_ms']} ms. What the outbox adds to an "
            "approval: reading the team's members, their preferences and the endpoints, one "
            "bulk insert of the rows, and after the commit two messages to Redis (emails, "
            "webhooks).",
            "",
            "## Delivery latency from commit",
            "",
            "| channel | rows | p50 ms | p95 ms | max ms |",
            "|---|---|---|---|---|",
            *[
                f"| {name} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} |"
                for name, s in lat.items()
            ],
            "",
            f"Throughput: {result['throughput_per_second']} deliveries/s "
            f"({lat['all']['n'] if 'all' in lat else 0} delivered in "
            f"{result['span_seconds']} s from the first commit to the last delivery; the "
            "burst itself took part of that time, so this is bounded by the approval rate "
            "as well as by the workers).",
            "",
            "## Capacity: draining a backlog",
            "",
            f"{drain['rows']} deliveries of {drain['approvals']} more approvals, their messages "
            "held back (as in a broker outage) and then released at once: "
            f"{drain['delivered']} delivered in {drain['seconds']} s, "
            f"**{drain['per_second']} deliveries/s** with these workers.",
            "",
            "## Exactly once",
            "",
            f"SMTP server accepted {once['smtp_messages']} messages "
            f"({once['smtp_duplicates']} duplicates by Message-ID) for {once['email_rows']} "
            f"email rows; the receiver got {once['webhook_posts']} POSTs "
            f"({once['webhook_duplicates']} duplicates) for {once['webhook_rows']} webhook "
            "rows (burst and backlog together).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=1000, help="approvals with the outbox")
    parser.add_argument("--teammates", type=int, default=3, help="payments members besides alice")
    parser.add_argument("--endpoints", type=int, default=2, help="team webhooks")
    parser.add_argument(
        "--drain", type=int, default=300, help="approvals whose deliveries form the backlog"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for delivery")
    parser.add_argument("--database-url", default=database_url(DEFAULT_SERVER_URL, "bench_notify"))
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/notify.md"))
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/raw/notify.json"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wip-notify-"))
    prepare_database(args.database_url, reseed=True)
    queue = f"bench-notify-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "EMAIL_"))},
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": args.database_url,
        "PORTAL_VAR_DIR": str(work / "var"),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "REDIS_URL": args.redis_url,
        "CELERY_QUEUE": queue,
        "LOG_LEVEL": "WARNING",
        "AZURE_MODE": "emulator",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "WEBHOOK_ALLOW_HTTP": "1",
        "WEBHOOK_ALLOWED_CIDRS": "127.0.0.1/32",
        "PORTAL_BASE_URL": "https://portal.example.test",
    }
    os.environ.update(env)
    info = machine_info(database_url=args.database_url, redis_url=args.redis_url)
    try:
        result = run(args, env, work)
    finally:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
        if not args.keep_database:
            from django.db import connections

            connections.close_all()
            drop_database(args.database_url)
    command = (
        ".venv/bin/python benchmarks/notify_bench.py "
        f"--approvals {args.approvals} --teammates {args.teammates} "
        f"--endpoints {args.endpoints} --drain {args.drain} --workers {args.workers} "
        f"--concurrency {args.concurrency}"
    )
    publish(args.output, render(result, info, command), args.json, {"machine": info, **result})


if __name__ == "__main__":
    main()
