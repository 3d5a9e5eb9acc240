"""The liveness tick's scheduling, on a real kombu timer: one entry per consumer start, none
after a stop, and Celery's own registration of the step in the consumer blueprint."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from django.test import override_settings
from kombu.asynchronous.timer import Timer

from portal.celery import app as celery_app
from portal.worker_health import PoolLiveness


def live_entries(timer: Timer) -> list[object]:
    return [event.entry for event in timer._queue if not event.entry.canceled]


def consumer_on(timer: Timer) -> SimpleNamespace:
    """What the step reads of Celery's Consumer: its timer and its pool (not started here)."""
    return SimpleNamespace(timer=timer, pool=SimpleNamespace(_pool=None))


def test_the_step_belongs_to_the_consumer_blueprint_which_celery_restarts_on_reconnect() -> None:
    assert PoolLiveness in celery_app.steps["consumer"]
    assert PoolLiveness not in celery_app.steps["worker"]


def test_each_consumer_start_leaves_exactly_one_tick_scheduled(tmp_path: Path) -> None:
    timer = Timer()
    consumer = consumer_on(timer)
    with override_settings(WORKER_LIVENESS_FILE=str(tmp_path / "alive")):
        step = PoolLiveness(consumer)
    step.start(consumer)
    assert len(live_entries(timer)) == 1
    # A restart: Celery stops the step, clears the timer (asynloop), starts the step again.
    step.stop(consumer)
    assert live_entries(timer) == []
    timer.clear()
    step.start(consumer)
    assert len(live_entries(timer)) == 1
    # A start without a stop before it replaces the tick instead of adding a second one.
    step.start(consumer)
    assert len(live_entries(timer)) == 1


def test_a_tick_while_another_runs_does_nothing(tmp_path: Path) -> None:
    timer = Timer()
    consumer = consumer_on(timer)
    with override_settings(WORKER_LIVENESS_FILE=str(tmp_path / "alive")):
        step = PoolLiveness(consumer)
    step.start(consumer)
    ping = SimpleNamespace(sent=0)

    def apply_async(*_: object, **__: object) -> None:
        ping.sent += 1

    # A started pool as the tick reads it: no process busy, a queue to put the no-op on.
    consumer.pool._pool = SimpleNamespace(
        _quick_put=object(), _cache={}, _pool=[], apply_async=apply_async
    )
    with step.ticking:
        step.tick()
    assert ping.sent == 0
    step.tick()
    assert ping.sent == 1
