"""Portal-level periodic tasks."""

import socket

from celery import shared_task
from django.utils import timezone

from accounts.models import WorkerHeartbeat
from api.idempotency import idempotency_records_purge


@shared_task(name="portal.tasks.heartbeat")
def heartbeat() -> None:
    """Record that a worker on this host is consuming the queue."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=socket.gethostname(), defaults={"seen_at": timezone.now()}
    )


@shared_task(name="portal.tasks.purge_idempotency_records")
def purge_idempotency_records() -> int:
    """Delete Idempotency-Key records past their 24 h lifetime."""
    return idempotency_records_purge()
