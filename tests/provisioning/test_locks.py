"""The cross-worker FIC write lock on Redis: held for as long as its holder runs, however long,
and free again soon after a holder dies without releasing it (kill -9)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis

from provisioning.errors import TransientError
from provisioning.locks import _lock_name, serialized
from tests.support.services import free_port, redis_url_or_missing

pytestmark = [pytest.mark.integration]


def test_a_lock_held_longer_than_its_ttl_is_renewed_until_released(settings: Any) -> None:
    settings.REDIS_URL = redis_url_or_missing()
    key = f"identity-{uuid.uuid4()}"
    rival = redis.Redis.from_url(settings.REDIS_URL).lock(_lock_name(key), timeout=5)

    with serialized(key, ttl=0.3):
        time.sleep(1.0)  # more than three TTLs
        assert not rival.acquire(blocking=False)

    assert rival.acquire(blocking=False)
    rival.release()


def test_a_lock_left_by_a_dead_holder_is_free_within_the_ttl(settings: Any) -> None:
    settings.REDIS_URL = redis_url_or_missing()
    key = f"identity-{uuid.uuid4()}"
    # What a worker killed inside the block leaves behind: the key, no longer renewed.
    assert redis.Redis.from_url(settings.REDIS_URL).lock(_lock_name(key), timeout=0.5).acquire()
    started = time.monotonic()

    with serialized(key, timeout=5, ttl=0.5):
        waited = time.monotonic() - started

    assert waited < 2


def test_an_unreachable_redis_is_a_transient_error_and_the_block_does_not_run(
    settings: Any,
) -> None:
    """A Redis restart while a FIC is written: the step retries with backoff (see the engine's
    retries) instead of crashing the task and leaving the step running for the sweeper."""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    ran = False

    with pytest.raises(TransientError) as caught, serialized("identity-gone", timeout=1):
        ran = True

    assert not ran
    assert caught.value.code == "LockUnavailable"
    assert "Redis did not answer" in str(caught.value)
    assert caught.value.wait_out
