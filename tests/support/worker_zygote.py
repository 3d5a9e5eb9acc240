"""Starting `celery worker` processes in a fraction of a second, for tests that kill many.

A worker spends seconds importing Django, Celery and the Azure SDKs before it consumes anything
(3 to 8 s on a busy 2-core machine): a test that kills and restarts the worker twenty times would
spend most of its time there. A *zygote* process imports all of that once, then forks a fresh
worker on demand. Each fork starts a session of its own and runs the real `celery worker`
command line (`app.worker_main`, the same options as `start_worker`): a broker connection, a
prefork pool, acks_late. Only the imports are shared. The zygote never opens a database or
broker connection itself, so nothing is shared through the fork.

    python -m tests.support.worker_zygote   # stdin: one JSON command per line; stdout: pids
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.services import REPO_ROOT, child_env, python_executable, wait_until
from tests.support.workers import Broker, worker_argv


class ForkedWorker:
    """A worker forked by the zygote: kill() is kill -9 of its whole process group."""

    def __init__(self, name: str, pid: int, log_path: Path) -> None:
        self.name, self.pid, self.log_path = name, pid, log_path

    def alive(self) -> bool:
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            # ProcessLookupError: the process was reaped between open() and read() (ESRCH).
            return False
        return state != "Z"

    def _signal(self, sig: int, timeout: float) -> bool:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            # Forked a moment ago and not yet the leader of its group (setsid is its first
            # call, before any pool process exists): signal the process itself.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
        return wait_until(lambda: not self.alive(), timeout=timeout, interval=0.02)

    def kill(self) -> None:
        """kill -9 of the main process and its pool processes, as a crash would."""
        if not self._signal(signal.SIGKILL, 15):
            raise RuntimeError(f"{self.name} (pid {self.pid}) survived SIGKILL")

    def stop(self, timeout: float = 10) -> None:
        if self.alive() and not self._signal(signal.SIGTERM, timeout):
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class WorkerZygote:
    """The test's side of a zygote process started with one worker environment."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.folder = folder
        self.started: list[ForkedWorker] = []
        self.process = subprocess.Popen(
            [python_executable(), "-m", "tests.support.worker_zygote"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(folder / "zygote.log").open("ab"),
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().strip()
        if ready != "READY":
            raise RuntimeError(f"worker zygote did not start: {ready!r}, see {folder}")

    def fork(
        self, broker: Broker, *, concurrency: int = 2, settings: dict[str, str] | None = None
    ) -> ForkedWorker:
        """A new worker; `settings` overrides Django settings in it alone (the environment was
        read once, by the zygote), e.g. a WORKER_LIVENESS_FILE of its own."""
        name = f"worker-{len(self.started)}"
        log_path = self.folder / f"{name}.log"
        argv = worker_argv(name, broker, concurrency)
        assert self.process.stdin is not None and self.process.stdout is not None
        command = {"argv": argv, "log": str(log_path), "settings": settings or {}}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        worker = ForkedWorker(name, int(self.process.stdout.readline()), log_path)
        self.started.append(worker)
        return worker

    def close(self) -> None:
        running = [worker for worker in self.started if worker.alive()]
        for worker in running:  # SIGTERM to all first, so the shutdowns overlap
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in running:
            worker.stop()
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


ZygoteFactory = Callable[..., WorkerZygote]


@pytest.fixture
def worker_zygote(tmp_path: Path) -> Iterator[ZygoteFactory]:
    """`worker_zygote(broker, **env)`: a zygote forking workers on `broker` with `env` (as
    `start_worker` takes them); its workers and itself are stopped when the test ends."""
    zygotes: list[WorkerZygote] = []

    def start(broker: Broker, **env: str) -> WorkerZygote:
        folder = tmp_path / f"zygote-{len(zygotes)}"
        folder.mkdir()
        zygote = WorkerZygote(child_env(**broker.env, **env), folder)
        zygotes.append(zygote)
        return zygote

    yield start
    for zygote in zygotes:
        zygote.close()


def _serve() -> None:
    """The zygote: import everything a worker needs, then fork one per command line."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from portal.celery import app

    app.loader.import_default_modules()  # the task modules, and through them the Azure SDKs
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    workers: set[int] = set()
    while True:
        with contextlib.suppress(ChildProcessError):
            while reaped := os.waitpid(-1, os.WNOHANG)[0]:  # reap the workers that died
                workers.discard(reaped)
        readable, _, _ = select.select([sys.stdin], [], [], 0.2)
        if not readable:
            continue
        line = sys.stdin.readline()
        if not line:
            # The test closed our stdin: it stopped its workers first, or it is gone (killed,
            # say) and nobody else will stop them. Workers run in sessions of their own, so
            # they would outlive us, holding database connections and taking queued tasks.
            _stop_groups(workers)
            return
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _become_worker(app, command["argv"], command["log"], command.get("settings", {}))
        workers.add(pid)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


def _stop_groups(workers: set[int], timeout: float = 10) -> None:
    """SIGTERM the process group of each worker still running, SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in list(workers):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)

        def all_reaped() -> bool:
            with contextlib.suppress(ChildProcessError):
                while reaped := os.waitpid(-1, os.WNOHANG)[0]:
                    workers.discard(reaped)
            return not workers

        if wait_until(all_reaped, timeout=timeout, interval=0.05):
            return


def _become_worker(app: object, argv: list[str], log: str, overrides: dict[str, str]) -> None:
    os.setsid()  # a process group of its own: kill -9 reaches the pool processes too
    from django.conf import settings

    for name, value in overrides.items():
        setattr(settings, name, value)
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    code = 0
    try:
        app.worker_main(argv)  # type: ignore[attr-defined]
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # report it in the log, then leave like a process would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    _serve()
