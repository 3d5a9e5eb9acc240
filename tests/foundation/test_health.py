"""/healthz and /readyz, as load balancers and Kubernetes probes see them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from portal.celery import app as celery_app
from tests.support.services import free_port
from tests.support.workers import set_celery_conf

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok_without_touching_anything(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_ok_when_database_and_broker_are_reachable(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "broker": "ok"}


@pytest.fixture
def unreachable_broker() -> Iterator[None]:
    """Point the broker at a port nobody listens on: a real connection attempt that fails."""
    conf = celery_app.conf
    saved = {
        key: conf[key] for key in ("broker_url", "broker_write_url", "broker_transport_options")
    }
    url = f"redis://127.0.0.1:{free_port()}/0"
    set_celery_conf(
        broker_url=url, broker_write_url=url, broker_transport_options={"socket_connect_timeout": 1}
    )
    try:
        yield
    finally:
        set_celery_conf(**saved)


@pytest.mark.usefixtures("unreachable_broker")
def test_readyz_answers_503_naming_the_broker_when_it_is_unreachable(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("broker unreachable")


def test_readyz_refuses_other_methods(client: Client) -> None:
    assert client.post("/readyz").status_code == 405


def test_workers_health_follows_the_newest_heartbeat(client: Client) -> None:
    from datetime import timedelta

    from django.test import override_settings
    from django.utils import timezone

    from accounts.models import WorkerHeartbeat

    none = client.get("/healthz/workers")
    assert none.status_code == 503 and none.json()["status"] == "none"

    beat = WorkerHeartbeat.objects.create(hostname="w1", seen_at=timezone.now())
    with override_settings(WORKER_HEARTBEAT_STALE_SECONDS=60):
        fresh = client.get("/healthz/workers")
        assert fresh.status_code == 200 and fresh.json()["status"] == "ok"

        WorkerHeartbeat.objects.filter(pk=beat.pk).update(
            seen_at=timezone.now() - timedelta(seconds=61)
        )
        stale = client.get("/healthz/workers")
        ready = client.get("/readyz")
    assert stale.status_code == 503 and stale.json()["status"] == "stale"
    # Readiness is the web replica's own: it can serve, so it stays ready and reports workers.
    assert ready.status_code == 200
    assert ready.json()["workers"]["status"] == "stale"
