"""`GET /metrics`: Prometheus metrics behind a bearer token (METRICS_TOKEN).

Two parts: what the pod's processes counted (provisioning.metrics, added up across gunicorn
workers in multiprocess mode) and the portal's state, read from the database and the broker at
scrape time (requests by kind and status, queue depth and oldest message age, worker heartbeat
age, the audit chain check's age and verdict, drift). With no METRICS_TOKEN the endpoint does not
exist (404); a missing or wrong token is a 401.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from django.conf import settings
from django.db.models import Count, Max, Min
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from accounts.models import WorkerHeartbeat
from identities.models import (
    REQUEST_STATUSES_IN_FLIGHT,
    AuditChainCheck,
    ChainCheckStatus,
    DriftState,
    Identity,
    IdentityRequest,
    IdentityStatus,
    RequestKind,
    RequestStatus,
)
from portal.celery import app as celery_app
from portal.metrics_server import SENT_AT_HEADER, exposition, process_registry, token_matches

logger = logging.getLogger(__name__)


def _requests() -> Iterator[Metric]:
    counts = {(kind, status): 0 for kind in RequestKind.values for status in RequestStatus.values}
    for row in IdentityRequest.objects.values("kind", "status").annotate(n=Count("id")):
        counts[(row["kind"], row["status"])] = row["n"]
    family = GaugeMetricFamily(
        "portal_identity_requests",
        "Identity requests by kind and status.",
        labels=["kind", "status"],
    )
    for (kind, status), n in sorted(counts.items()):
        family.add_metric([kind, status], n)
    yield family
    oldest = IdentityRequest.objects.filter(status__in=REQUEST_STATUSES_IN_FLIGHT).aggregate(
        oldest=Min("updated_at")
    )["oldest"]
    yield GaugeMetricFamily(
        "portal_requests_in_flight_oldest_age_seconds",
        "Seconds since the longest-waiting approved or provisioning request last moved (0: none).",
        value=(timezone.now() - oldest).total_seconds() if oldest else 0.0,
    )


def _identities() -> Iterator[Metric]:
    counts = {(s, d): 0 for s in IdentityStatus.values for d in DriftState.values}
    for row in Identity.objects.values("status", "drift_state").annotate(n=Count("id")):
        counts[(row["status"], row["drift_state"])] = row["n"]
    family = GaugeMetricFamily(
        "portal_identities",
        "Identities by status and drift state.",
        labels=["status", "drift_state"],
    )
    for (status, drift_state), n in sorted(counts.items()):
        family.add_metric([status, drift_state], n)
    yield family


def _heartbeat() -> Iterator[Metric]:
    newest = WorkerHeartbeat.objects.aggregate(newest=Max("seen_at"))["newest"]
    if newest is not None:
        yield GaugeMetricFamily(
            "portal_worker_heartbeat_age_seconds",
            "Seconds since the newest worker heartbeat (one every HEARTBEAT_INTERVAL_SECONDS).",
            value=(timezone.now() - newest).total_seconds(),
        )


def _audit_chain() -> Iterator[Metric]:
    finished = (
        AuditChainCheck.objects.exclude(status=ChainCheckStatus.RUNNING)
        .exclude(finished_at=None)
        .order_by("-finished_at", "-id")
        .first()
    )
    verdict = GaugeMetricFamily(
        "portal_audit_chain_check_verdict",
        "1 for the verdict of the newest finished whole-chain check, 0 for the others.",
        labels=["status"],
    )
    for status in (ChainCheckStatus.PASSED, ChainCheckStatus.FAILED, ChainCheckStatus.ERROR):
        verdict.add_metric([status], 1.0 if finished and finished.status == status else 0.0)
    yield verdict
    if finished is not None and finished.finished_at is not None:
        yield GaugeMetricFamily(
            "portal_audit_chain_check_age_seconds",
            "Seconds since the newest whole-chain check finished.",
            value=(timezone.now() - finished.finished_at).total_seconds(),
        )
    yield GaugeMetricFamily(
        "portal_audit_chain_checks_running",
        "Whole-chain checks running now.",
        value=AuditChainCheck.objects.filter(status=ChainCheckStatus.RUNNING).count(),
    )


def redis_queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold `queue`'s waiting messages: one per priority step (kombu's
    Redis transport, Channel._q_for_pri)."""
    return [queue] + [f"{queue}{RedisChannel.sep}{step}" for step in PRIORITY_STEPS if step]


def _queue_redis(queue: str) -> tuple[int, int, float | None]:
    """(waiting, delivered but unacknowledged, age of the oldest waiting message)."""
    url = celery_app.conf.broker_url
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    lists = redis_queue_lists(queue)
    try:
        pipe = client.pipeline(transaction=False)
        for name in lists:
            # kombu pushes on the left and pops on the right: the oldest message is the last.
            pipe.llen(name)
            pipe.lindex(name, -1)
        pipe.hlen("unacked")
        *answers, unacked = pipe.execute()
    finally:
        client.close()
    waiting = sum(int(length) for length in answers[0::2])
    sent = [_sent_at(oldest) for oldest in answers[1::2] if oldest]
    known = [at for at in sent if at is not None]
    age = max(0.0, time.time() - min(known)) if known else None
    return waiting, int(unacked), age


def _sent_at(message: bytes) -> float | None:
    try:
        sent_at = json.loads(message).get("headers", {}).get(SENT_AT_HEADER)
    except (ValueError, AttributeError):
        return None
    return float(sent_at) if isinstance(sent_at, int | float) else None


def _queue_filesystem(queue: str) -> tuple[int, int, float | None]:
    folder = Path(celery_app.conf.broker_transport_options["data_folder_in"])
    times = [path.stat().st_mtime for path in folder.glob(f"*.{queue}.msg")]
    return len(times), 0, (max(0.0, time.time() - min(times)) if times else None)


def _queue() -> Iterator[Metric]:
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    # The broker the Celery app publishes to (what settings configured, or a test's own).
    read = _queue_redis if celery_app.conf.broker_url.startswith("redis") else _queue_filesystem
    waiting, unacked, age = read(queue)
    yield _gauge("portal_queue_messages", "Task messages waiting in the broker.", queue, waiting)
    yield _gauge(
        "portal_queue_unacked_messages", "Delivered tasks not yet acknowledged.", queue, unacked
    )
    yield _gauge(
        "portal_queue_oldest_message_age_seconds",
        "Age of the oldest waiting task message (0: the queue is empty).",
        queue,
        age or 0.0,
    )


def _gauge(name: str, documentation: str, queue: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["queue"])
    family.add_metric([queue], value)
    return family


# Each part is read on its own: one that fails (the broker down) is reported by
# portal_state_up{part} = 0 and the others are still served.
_PARTS = {
    "requests": _requests,
    "identities": _identities,
    "heartbeat": _heartbeat,
    "audit_chain": _audit_chain,
    "queue": _queue,
}


class PortalStateCollector(Collector):
    """The portal's state, read at scrape time from the database and the broker."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "portal_state_up", "1 when this part of the state could be read.", labels=["part"]
        )
        for part, read in _PARTS.items():
            try:
                metrics = list(read())
            except Exception as error:  # a scrape must not fail because one source did
                logger.warning("metrics: could not read %s: %s", part, type(error).__name__)
                up.add_metric([part], 0.0)
                continue
            up.add_metric([part], 1.0)
            yield from metrics
        yield up


_STATE = CollectorRegistry(auto_describe=False)
_STATE.register(PortalStateCollector())


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus text format, for a scraper holding METRICS_TOKEN."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off (no METRICS_TOKEN)")
    if not token_matches(request.headers.get("Authorization", ""), token):
        response = HttpResponse(
            "a bearer token is required\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(process_registry(), _STATE), content_type=CONTENT_TYPE_LATEST)
