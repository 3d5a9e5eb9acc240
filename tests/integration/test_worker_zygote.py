"""The test-support zygote (tests/support/worker_zygote.py) must not leave workers behind."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.support.services import wait_until
from tests.support.worker_zygote import ZygoteFactory
from tests.support.workers import make_broker

pytestmark = pytest.mark.integration


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_do_not_outlive_a_zygote_whose_test_process_is_gone(
    worker_zygote: ZygoteFactory, tmp_path: Path
) -> None:
    """A killed test run never stops its forked workers; they run in sessions of their own,
    so without the zygote's help they would keep their database connections and take queued
    tasks long after (seen: six such processes an hour after a run was killed)."""
    broker = make_broker("embedded", tmp_path)
    zygote = worker_zygote(broker)
    worker = zygote.fork(broker, concurrency=2)
    ready = wait_until(lambda: "ready." in worker.log_tail(), timeout=60, interval=0.1)
    assert ready, worker.log_tail()

    # All the zygote sees of its test process dying is its stdin closing.
    assert zygote.process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        zygote.process.stdin.close()
    zygote.process.wait(timeout=30)

    gone = wait_until(lambda: not group_alive(worker.pid), timeout=30, interval=0.05)
    assert gone, "the worker or its pool processes outlived the zygote"
