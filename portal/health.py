"""Liveness and readiness endpoints for load balancers and Kubernetes probes."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.models import WorkerHeartbeat
from portal.celery import app as celery_app
from portal.celery import ensure_broker_folders

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests; checks nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready"
        logger.warning("readiness: database unreachable: %s", exc)
        return f"database unreachable: {type(exc).__name__}"
    return None


def _check_broker() -> str | None:
    try:
        ensure_broker_folders()
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:  # any transport error means "not ready"
        logger.warning("readiness: broker unreachable: %s", exc)
        return f"broker unreachable: {type(exc).__name__}"
    return None


def _workers() -> dict[str, object]:
    """The newest worker heartbeat, its age and whether it is stale (a worker wedged or gone)."""
    latest = WorkerHeartbeat.objects.order_by("-seen_at").first()
    if latest is None:
        return {"status": "none", "last_heartbeat": None, "age_seconds": None}
    age = (timezone.now() - latest.seen_at).total_seconds()
    stale = age > settings.WORKER_HEARTBEAT_STALE_SECONDS
    return {
        "status": "stale" if stale else "ok",
        "last_heartbeat": latest.seen_at.isoformat(),
        "age_seconds": round(age),
        "stale_after_seconds": settings.WORKER_HEARTBEAT_STALE_SECONDS,
    }


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Can this web replica serve? Database and broker reachable: 200; otherwise 503 naming
    each failing part. The workers' state is reported, never judged here: taking every web
    replica out of the load balancer because a worker wedged would turn one fault into an
    outage of the whole portal (see /healthz/workers)."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    failing = {name: error for name, error in checks.items() if error}
    body: dict[str, object] = {
        "status": "ok" if not failing else "unavailable",
        "checks": {name: (error or "ok") for name, error in checks.items()},
    }
    if "database" not in failing:
        workers = _workers()
        body["last_worker_heartbeat"] = workers["last_heartbeat"]
        body["workers"] = workers
    return JsonResponse(body, status=503 if failing else 200)


@never_cache
@require_GET
def workers(request: HttpRequest) -> JsonResponse:
    """For monitoring and alerts: 200 while some worker ran the heartbeat task within
    WORKER_HEARTBEAT_STALE_SECONDS; 503 when the newest heartbeat is stale or there is none."""
    if _check_database() is not None:
        return JsonResponse({"status": "unknown", "detail": "database unreachable"}, status=503)
    body = _workers()
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)
