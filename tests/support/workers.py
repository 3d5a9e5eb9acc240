"""Starting real Celery worker processes against the embedded broker or Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kombu.pools
import pytest
from kombu import Connection

from portal.celery import app as celery_app
from tests.support.services import (
    ManagedProcess,
    celery_executable,
    child_env,
    redis_url_or_missing,
    stop_all,
)


@dataclass
class Broker:
    """Where a test's worker listens: a URL, its transport options and a queue of its own."""

    kind: str
    url: str
    transport_options: dict[str, Any]
    queue: str
    env: dict[str, str]

    def connection(self) -> Connection:
        return Connection(self.url, transport_options=self.transport_options)

    def send(self, task: Any, *args: Any, **kwargs: Any) -> None:
        """Publish a task to this broker, whatever broker the test process itself is set to."""
        with self.connection() as conn:
            task.apply_async(args=args, kwargs=kwargs, connection=conn, queue=self.queue)


def worker_argv(name: str, broker: Broker, concurrency: int) -> list[str]:
    """The `celery worker` arguments every test worker runs with (started or forked)."""
    return [
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--hostname={name}-{broker.queue}@%h",
        "--without-mingle",
        "--without-gossip",
        "-Q",
        broker.queue,
    ]


# The Redis queues this session made: each leaves keys behind (its list, kombu's bindings, and
# what a killed worker had taken), removed when the session ends.
_redis_queues: list[tuple[str, str]] = []


@pytest.fixture(scope="session", autouse=True)
def redis_test_queues_removed() -> Iterator[None]:
    """At the end of the session, delete every key of this session's test queues, so runs do
    not pile them up in the shared Redis (keys of other sessions' queues are left alone)."""
    yield
    import redis

    for url in sorted({url for url, _ in _redis_queues}):
        queues = {queue for queue_url, queue in _redis_queues if queue_url == url}
        client = redis.Redis.from_url(url)
        try:
            for queue in queues:
                keys = list(client.scan_iter(match=f"*{queue}*", count=1000))
                if keys:
                    client.delete(*keys)
            # A killed worker's unacknowledged messages stay in kombu's shared `unacked` hash
            # (a JSON [message, exchange, routing key] per delivery tag) and would be restored
            # to their dead queue by the next worker on this database.
            for tag, raw in client.hscan_iter("unacked"):
                if json.loads(raw)[2] in queues:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)
        except redis.RedisError:  # Redis is gone (a fault test stopped it): nothing to tidy
            pass
        finally:
            client.close()


def make_broker(kind: str, tmp_path: Path, *, url: str = "") -> Broker:
    """A broker of `kind` ("redis": REDIS_URL, or `url`; "embedded": a folder under tmp_path)."""
    queue = f"test-{uuid.uuid4().hex[:10]}"
    if kind == "redis":
        url = url or redis_url_or_missing()
        _redis_queues.append((url, queue))
        return Broker(
            kind,
            url,
            {"visibility_timeout": 3600},
            queue,
            {"REDIS_URL": url, "CELERY_QUEUE": queue},
        )
    folder = tmp_path / "broker"
    for sub in ("queue", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    return Broker(
        kind,
        "filesystem://",
        options,
        queue,
        {"REDIS_URL": "", "BROKER_DIR": str(folder), "CELERY_QUEUE": queue},
    )


WorkerFactory = Callable[..., ManagedProcess]
_BROKER_KEYS = (
    "broker_url",
    "broker_write_url",
    "broker_read_url",
    "broker_transport_options",
    "task_default_queue",
)


def set_celery_conf(**values: Any) -> None:
    """Set Celery configuration at run time. The app reads Django settings under the CELERY_
    namespace, and a namespaced key wins over the plain one, so set both."""
    for key, value in values.items():
        celery_app.conf[key] = value
        celery_app.conf[f"CELERY_{key.upper()}"] = value


def point_celery_at(broker: Broker) -> None:
    """Make this test process publish (e.g. on-commit enqueues) to `broker` and its queue."""
    set_celery_conf(
        broker_url=broker.url,
        broker_write_url=broker.url,
        broker_read_url=broker.url,
        broker_transport_options=broker.transport_options,
        task_default_queue=broker.queue,
    )
    # The app caches its queues, router and connection pool from the first publish, and kombu
    # keeps producer pools per connection globally: drop them all.
    celery_app.__dict__.pop("amqp", None)
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    kombu.pools.reset()


@pytest.fixture(scope="session", autouse=True)
def isolated_celery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Tasks enqueued by tests without a worker land in a throwaway folder nobody consumes,
    never in a developer's broker or CI's Redis."""
    saved = {key: celery_app.conf[key] for key in _BROKER_KEYS}
    orphans = make_broker("embedded", tmp_path_factory.mktemp("celery-orphans"))
    point_celery_at(orphans)
    yield orphans
    set_celery_conf(**saved)


@pytest.fixture
def use_broker(isolated_celery: Broker) -> Iterator[Callable[[Broker], None]]:
    """`use_broker(broker)`: this test's enqueues go to `broker` (restored afterwards)."""
    yield point_celery_at
    point_celery_at(isolated_celery)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start `celery worker` processes on a broker; all are stopped when the test ends."""
    started: list[ManagedProcess] = []

    def start(broker: Broker, *, concurrency: int = 2, **env: str) -> ManagedProcess:
        name = f"worker-{len(started)}"
        process = ManagedProcess(
            name=name,
            args=[celery_executable(), "-A", "portal", *worker_argv(name, broker, concurrency)],
            env=child_env(**broker.env, **env),
            log_path=tmp_path / f"{name}.log",
        ).start()
        started.append(process)
        return process

    yield start
    stop_all(started)


@pytest.fixture
def start_beat(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start `celery beat` (the periodic sweeper, heartbeat and drift check) publishing to a
    broker's queue, with its schedule file under tmp_path; stopped when the test ends."""
    started: list[ManagedProcess] = []

    def start(broker: Broker, **env: str) -> ManagedProcess:
        name = f"beat-{len(started)}"
        process = ManagedProcess(
            name=name,
            args=[
                celery_executable(),
                "-A",
                "portal",
                "beat",
                "--loglevel=INFO",
                f"--schedule={tmp_path / f'{name}-schedule'}",
            ],
            env=child_env(**broker.env, **env),
            log_path=tmp_path / f"{name}.log",
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
