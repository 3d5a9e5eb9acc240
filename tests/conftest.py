"""Shared fixtures. Each support module registers its own; see tests/support/."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis

from identities import work
from provisioning import ratelimit

pytest_plugins = [
    "tests.support.log_capture",
    "tests.support.workers",
    "tests.support.emulator",
    "tests.support.people",
    "tests.support.sandbox",
    "tests.support.redis_server",
    "tests.support.tcp_proxy",
    "tests.support.worker_zygote",
    "tests.support.lanes",
    "tests.support.azurite",
    "tests.support.oidc_issuer",
    "tests.support.smtp",
    "tests.support.http_receiver",
    "tests.support.tls_receiver",
    "tests.support.connect_proxy",
]


@pytest.hookimpl(trylast=True)  # after pytest-django has put the transactional tests last
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Transactional tests with serialized_rollback run before the other transactional ones,
    whatever subset or order was asked for.

    A serialized test restores the migrated rows (content types, role groups, the catalog) at
    set-up and flushes without post_migrate at teardown. A plain transactional test's flush
    runs post_migrate, which creates the content types again under new ids, and a restore
    after that fails on their unique names. The whole suite happens to collect them in the
    safe order; `pytest tests/integration tests/identities` did not.
    """
    transactional = [n for n, item in enumerate(items) if _transactional(item)]
    ordered = sorted((items[n] for n in transactional), key=lambda item: not _serialized(item))
    for n, item in zip(transactional, ordered, strict=True):
        items[n] = item


def _transactional(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    return bool(
        (marker is not None and marker.kwargs.get("transaction"))
        or "transactional_db" in fixtures
        or "live_server" in fixtures
    )


def _serialized(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("django_db")
    return bool(marker is not None and marker.kwargs.get("serialized_rollback"))


@pytest.fixture
def work_sent() -> Iterator[list[tuple[work.Work, tuple[object, ...]]]]:
    """Background work the domain asks for, recorded instead of sent to a broker."""
    sent: list[tuple[work.Work, tuple[object, ...]]] = []
    with work.sending_to(lambda name, args: sent.append((name, args))):
        yield sent


@pytest.fixture(autouse=True)
def write_limiter_forgotten() -> None:
    """The write limiter (provisioning.ratelimit) mirrors one Azure's buckets in this xdist
    worker's Redis database; every test has its own emulator, so what the last one taught it (a
    429 storm's Retry-After holds, a nearly empty bucket) is forgotten. Without this a test after
    a storm waited out the storm's holds in CI (99 s instead of 3 s)."""
    # Without Redis only this process's buckets are there, and they were cleared first.
    with contextlib.suppress(redis.RedisError):
        ratelimit.forget_buckets()


@pytest.fixture(autouse=True)
def scope_existence_check_off() -> Iterator[None]:
    """Most tests file requests on scopes that no Azure holds, with no emulator to ask: the
    existence check (Resource Graph, identities.scope_lookup) is off unless a test turns it on
    with the `resource_graph` fixture (tests/support/sandbox.py)."""
    from django.test import override_settings

    with override_settings(SCOPE_EXISTENCE_CHECK=False):
        yield


@pytest.fixture(scope="session", autouse=True)
def session_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The default cache is a folder every process of a checkout shares (CACHE_DIR); each test
    session gets its own, so two runs side by side never share throttle counters."""
    from django.conf import settings
    from django.test import override_settings

    if settings.CACHES["default"]["BACKEND"].endswith("FileBasedCache"):
        folder = tmp_path_factory.mktemp("cache")
        caches = {"default": {**settings.CACHES["default"], "LOCATION": str(folder)}}
        with override_settings(CACHES=caches):
            yield
    else:
        yield


@pytest.fixture(autouse=True)
def audit_anchor_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Each test anchors the audit chain in a folder of its own (the database starts empty for
    each test, so checkpoints of an earlier one would contradict it); processes the test starts
    inherit it through the environment."""
    from django.test import override_settings

    folder = tmp_path_factory.mktemp("anchors")
    monkeypatch.setenv("AUDIT_ANCHOR_DIR", str(folder))
    with override_settings(AUDIT_ANCHOR_DIR=folder):
        yield
