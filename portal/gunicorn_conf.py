"""gunicorn hooks (`gunicorn portal.wsgi -c python:portal.gunicorn_conf`): the metrics of every
worker process are added up through PROMETHEUS_MULTIPROC_DIR (README "Metrics")."""

from __future__ import annotations

from typing import Any

from portal import metrics_server


def on_starting(server: Any) -> None:
    """The master, before any worker: drop the files of a previous container."""
    metrics_server.clear_multiproc_dir()


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (restarted, killed): drop its live gauges."""
    metrics_server.mark_process_dead(worker.pid)
