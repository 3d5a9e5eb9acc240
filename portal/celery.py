"""The Celery application; configuration comes from CELERY_* names in portal.settings."""

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import (
    before_task_publish,
    setup_logging,
    task_postrun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
)

from portal import metrics_server
from portal.worker_health import PoolLiveness
from provisioning.metrics import task_finished

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

metrics_server.ensure_multiproc_dir()

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The project's own periodic tasks: `portal` is the project, not an installed app.
app.autodiscover_tasks(["portal"])
# The liveness file a supervisor probes: a consumer step, so its tick is rescheduled whenever
# the consumer restarts (a broker reconnect clears the timer).
app.steps["consumer"].add(PoolLiveness)


def ensure_broker_folders() -> None:
    """The filesystem broker needs its folders before the first publish or poll."""
    from django.conf import settings

    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        if key in options:
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@worker_init.connect
def _worker_init(**_: object) -> None:
    ensure_broker_folders()
    # The main process, before the pool forks: counts of a previous container are dropped.
    metrics_server.clear_multiproc_dir()


@worker_ready.connect
def _worker_ready(**_: object) -> None:
    """The worker pod's metrics exporter (WORKER_METRICS_PORT, bearer METRICS_TOKEN)."""
    from django.conf import settings

    if settings.WORKER_METRICS_PORT and settings.METRICS_TOKEN:
        metrics_server.serve_worker_metrics(
            port=settings.WORKER_METRICS_PORT, token=settings.METRICS_TOKEN
        )


@worker_process_shutdown.connect
def _worker_process_shutdown(pid: int | None = None, **_: object) -> None:
    metrics_server.mark_process_dead(pid or os.getpid())


@before_task_publish.connect
def _stamp_sent_at(headers: dict[str, Any] | None = None, **_: object) -> None:
    """The publish time rides in the message, so /metrics can tell the oldest message's age."""
    if headers is not None:
        headers.setdefault(metrics_server.SENT_AT_HEADER, time.time())


@task_postrun.connect
def _count_task(task: Any = None, state: str | None = None, **_: object) -> None:
    if task is not None:
        task_finished(task=task.name, state=state or "UNKNOWN")


@setup_logging.connect
def _django_logging(**_: object) -> None:
    """Workers and beat log through settings.LOGGING, like the web processes: the same format
    (LOG_FORMAT, LOG_LEVEL) and the filter that redacts tokens and secrets. Without a receiver
    here Celery replaces the root logger's handlers with its own, unfiltered ones."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
