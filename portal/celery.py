"""The Celery application; configuration comes from CELERY_* names in portal.settings."""

import os
from pathlib import Path

from celery import Celery
from celery.signals import setup_logging, worker_init

from portal.worker_health import PoolLiveness

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The project's own periodic tasks: `portal` is the project, not an installed app.
app.autodiscover_tasks(["portal"])
app.steps["worker"].add(PoolLiveness)  # the liveness file a supervisor probes


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


@setup_logging.connect
def _django_logging(**_: object) -> None:
    """Workers and beat log through settings.LOGGING, like the web processes: the same format
    (LOG_FORMAT, LOG_LEVEL) and the filter that redacts tokens and secrets. Without a receiver
    here Celery replaces the root logger's handlers with its own, unfiltered ones."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
