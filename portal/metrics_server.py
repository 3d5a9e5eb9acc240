"""Serving the process metrics: the registry to read (multiprocess or in-process), the bearer
token check, the worker pod's own exporter, and the multiprocess directory's housekeeping.

No Django model is imported here: gunicorn's hooks and Celery's signals use it before (or
without) the app registry. README "Metrics" says which process serves what.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A task message's publish time (Unix seconds), stamped by portal.celery on every send: the age
# of the oldest message waiting in the queue is read from it.
SENT_AT_HEADER = "portal_sent_at"


def multiproc_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV, "")
    return Path(value) if value else None


def process_registry() -> CollectorRegistry:
    """What this pod's processes counted: every process's files under PROMETHEUS_MULTIPROC_DIR
    added up, or this process's own registry when there is no such directory."""
    if multiproc_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def exposition(*registries: CollectorRegistry) -> bytes:
    """The text format of several registries, one after the other (their names never overlap)."""
    return b"".join(generate_latest(registry) for registry in registries)


def token_matches(authorization: str, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time; never true without a token."""
    scheme, _, presented = authorization.partition(" ")
    if not token or scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def ensure_multiproc_dir() -> None:
    """Every process may count: the directory must exist before the first value is written
    (a fresh emptyDir or /tmp has none)."""
    directory = multiproc_dir()
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)


def clear_multiproc_dir() -> None:
    """Empty the directory when the pod's server starts: files of a previous container (the
    directory is an emptyDir that outlives a container restart) would be counted again."""
    directory = multiproc_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def mark_process_dead(pid: int) -> None:
    """A gunicorn or pool child exited: drop its live gauges (counters stay summed)."""
    if multiproc_dir() is not None:
        multiprocess.mark_process_dead(pid)


# --- The worker pod's exporter -----------------------------------------------------------------
StartResponse = Callable[..., Any]


def metrics_wsgi_app(token: str) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """GET /metrics with the bearer token: the process metrics; 401 without it, 404 elsewhere."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") != "GET":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not token_matches(environ.get("HTTP_AUTHORIZATION", ""), token):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
            )
            return [b"a bearer token is required\n"]
        body = exposition(process_registry())
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every 15 s would drown the worker's log."""


# All interfaces: a pod listens on its own address; the NetworkPolicy admits only the scraper.
def serve_worker_metrics(*, port: int, token: str, host: str = "0.0.0.0") -> WSGIServer:  # noqa: S104
    """Serve the exporter from a daemon thread of the Celery main process."""
    server = make_server(host, port, metrics_wsgi_app(token), handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    logger.info("worker metrics on port %s (/metrics, bearer token)", server.server_port)
    return server
