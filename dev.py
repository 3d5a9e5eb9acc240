#!/usr/bin/env python3
"""One-command set-up for the Workload Identity Portal (standard library only).

python3 dev.py run     create .venv, install, migrate, seed demo data, start emulator + web +
                       worker + beat; Ctrl-C stops them all
python3 dev.py manage  run a management command with the settings `dev.py run` uses, e.g.
                       python3 dev.py manage create_api_token alice --scopes read,request
python3 dev.py test    create .venv with test tools, run ruff, mypy, lint-imports and the
                       pytest suite on every core (extra arguments go to pytest; --fast runs
                       the fast lane, -n 0 one test at a time)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
VAR = Path(os.environ.get("PORTAL_VAR_DIR", ROOT / "var"))
# The project's own packages, outermost first (docs/architecture.md).
PACKAGES = (
    "portal",
    "web",
    "api",
    "provisioning",
    "accounts",
    "notifications",
    "identities",
    "azure_emulator",
)


def say(message: str) -> None:
    print(f"\033[1m[portal]\033[0m {message}", flush=True)


def _requirements_digest(requirements: str) -> str:
    files = [ROOT / requirements, ROOT / "requirements.txt", ROOT / "constraints.txt"]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files if f.exists())).hexdigest()


def _installed(requirements: str) -> bool:
    stamp = VENV / f".installed-{requirements}"
    return stamp.exists() and stamp.read_text() == _requirements_digest(requirements)


def ensure_venv(requirements: str) -> None:
    """Create .venv and install the pinned requirements; skipped when nothing changed."""
    # dev.py runs under whatever python3 the machine has, so the guard is real here.
    if sys.version_info < (3, 11):  # noqa: UP036
        sys.exit("Python 3.11 or newer is required.")
    if not PY.exists():
        say(f"creating virtualenv in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    # requirements-dev.txt includes requirements.txt: a current test venv runs the portal too.
    if _installed(requirements) or _installed("requirements-dev.txt"):
        return
    digest = _requirements_digest(requirements)
    stamp = VENV / f".installed-{requirements}"
    say(f"installing {requirements} (pinned)")
    command = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    command += ["-r", str(ROOT / requirements)]
    if (ROOT / "constraints.txt").exists():
        command += ["-c", str(ROOT / "constraints.txt")]
    subprocess.run(command, check=True)
    stamp.write_text(digest)


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(PY), "manage.py", *args], cwd=ROOT, env=env, check=True)


def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    say(f"starting {name}: {' '.join(args)}")
    # Each child leads its own process group so Ctrl-C handling can stop it and its children.
    return subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)


def stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    # SIGTERM to each leader only: celery's main process then shuts its pool down gracefully;
    # whatever is left after the grace period gets SIGKILL as a whole group.
    for process in processes.values():
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop in time; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def wait_for_emulator(process: subprocess.Popen[bytes], url_file: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("the Azure emulator exited during start-up; see its output above")
        if url_file.exists() and url_file.read_text().strip():
            return url_file.read_text().strip()
        time.sleep(0.2)
    sys.exit("the Azure emulator did not become ready within 60 s")


def run_env() -> dict[str, str]:
    """The environment of `dev.py run` and of `dev.py manage` (one place, so they agree)."""
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Notification emails land as files under var/mail, not at a mail server.
    env.setdefault("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    return env


def manage_command(args: list[str]) -> None:
    """`dev.py manage …`: a management command against the database, emulator and generated
    SECRET_KEY that `dev.py run` uses (plain `python manage.py` has DEBUG off and refuses to
    start without SECRET_KEY). Exits with the command's exit code."""
    if not args:
        sys.exit("usage: python3 dev.py manage <command> [arguments…]  (e.g. `manage help`)")
    ensure_venv("requirements.txt")
    result = subprocess.run([str(PY), "manage.py", *args], cwd=ROOT, env=run_env())
    raise SystemExit(result.returncode)


def _port_taken(host: str, port: str) -> bool:
    """True if something already listens on host:port (checked before anything is started)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError:
            return True
    return False


def run() -> None:
    ensure_venv("requirements.txt")
    env = run_env()
    host = env.get("PORTAL_HOST", "127.0.0.1")
    port = env.get("PORTAL_PORT", "8000")
    # Links in emails and the YAML's comments name the portal's address: follow the port.
    env.setdefault("PORTAL_BASE_URL", f"http://{host}:{port}")
    taken = [
        f"{name} port {number} on {host} ({variable})"
        for name, number, variable in (
            ("the portal's", port, "PORTAL_PORT"),
            ("the Azure emulator's", env.get("EMULATOR_PORT", "8443"), "EMULATOR_PORT"),
        )
        if (name == "the portal's" or env.get("AZURE_MODE", "emulator") == "emulator")
        and _port_taken(host, number)
    ]
    if taken:
        sys.exit(
            f"dev.py: {' and '.join(taken)} already in use: stop what listens there (another "
            "`dev.py run`?) or choose other ports, e.g. PORTAL_PORT=8001 EMULATOR_PORT=8444 "
            "python3 dev.py run"
        )
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Explicitly: a shell that starts us in the background hands SIGINT down as ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if env.get("AZURE_MODE", "emulator") == "emulator":
            state_dir = Path(env.get("EMULATOR_STATE_DIR", VAR / "emulator"))
            url_file = state_dir / "url"
            url_file.unlink(missing_ok=True)
            emulator_port = env.get("EMULATOR_PORT", "8443")
            processes["emulator"] = start(
                "Azure emulator",
                [
                    str(PY),
                    "-m",
                    "azure_emulator",
                    "--port",
                    emulator_port,
                    "--state-dir",
                    str(state_dir),
                ],
                env,
            )
            env.setdefault("EMULATOR_URL", wait_for_emulator(processes["emulator"], url_file))
        say("applying database migrations")
        manage("migrate", "--no-input", "-v", "0", env=env)
        manage("seed_demo", env=env)
        celery = str(BIN / "celery")
        processes["worker"] = start(
            "worker", [celery, "-A", "portal", "worker", "--loglevel=INFO", "--concurrency=2"], env
        )
        # The drift run has a queue and a worker of its own: provisioning never waits behind it.
        drift_queue = env.get("CELERY_DRIFT_QUEUE", f"{env.get('CELERY_QUEUE', 'portal')}-drift")
        processes["drift-worker"] = start(
            "drift-worker",
            [
                *(celery, "-A", "portal", "worker", "--loglevel=INFO", "--concurrency=1"),
                *("-Q", drift_queue, "--hostname=drift@%h"),
            ],
            env,
        )
        processes["beat"] = start("beat", [celery, "-A", "portal", "beat", "--loglevel=INFO"], env)
        processes["web"] = start(
            "web", [str(PY), "manage.py", "runserver", f"{host}:{port}", "--noreload"], env
        )
        say(f"the portal is at http://{host}:{port}/  (Ctrl-C stops everything)")
        say(
            "demo logins (demo only, password 'demo'): alice (payments requester), bob (search "
            "requester), sam and sara (approvers), ada (auditor), admin"
        )
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.5)
        dead = [name for name, process in processes.items() if process.poll() is not None]
        say(f"{', '.join(dead)} exited; stopping the rest")
        raise SystemExit(1)
    except KeyboardInterrupt:
        say("stopping")
    finally:
        stop_all(processes)


def _cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def test(pytest_args: list[str]) -> None:
    ensure_venv("requirements-dev.txt")
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    steps = [
        ("ruff check", [str(BIN / "ruff"), "check", "."]),
        ("ruff format --check", [str(BIN / "ruff"), "format", "--check", "."]),
        ("mypy", [str(BIN / "mypy"), *PACKAGES]),
        # One dependency direction (docs/architecture.md): the contracts are in pyproject.toml.
        ("lint-imports", [str(BIN / "lint-imports")]),
    ]
    if env.get("SKIP_LINT") != "1":
        for label, command in steps:
            say(label)
            subprocess.run(command, cwd=ROOT, env=env, check=True)
    if "--fast" in pytest_args:
        # The fast lane: no worker processes, service kills or browser (tests/support/lanes.py).
        pytest_args = [arg for arg in pytest_args if arg != "--fast"] + ["-m", "not slow"]
    if not any(arg == "-n" or arg.startswith(("-n", "--numprocesses")) for arg in pytest_args):
        # One pytest-xdist worker per core, plus one: the tests that start workers, kill them or
        # drive a browser spend much of their time waiting on those processes (even with three
        # workers on 2 cores a fifth of the CPU sat idle). `load` with chunks of one hands each
        # worker its next test only when it is free, in collection order: every worker's tests
        # are in that order, so the ordering hooks of tests/conftest.py (transactional tests
        # last, serialized ones first among them) hold on each, and no worker is left with a
        # long tail of the slow tests (with xdist's default chunks one worker ran the whole
        # fault suite after the others had finished: 12.1 min against 10.0 on 2 cores).
        pytest_args = [
            f"--numprocesses={_cores() + 1}",
            "--dist=load",
            "--maxschedchunk=1",
            *pytest_args,
        ]
    if not any(arg.startswith("--durations") for arg in pytest_args):
        # The slowest tests, so a CI log shows where the suite's time goes.
        pytest_args = [*pytest_args, "--durations=25"]
    say("pytest " + " ".join(pytest_args))
    result = subprocess.run([str(PY), "-m", "pytest", *pytest_args], cwd=ROOT, env=env)
    raise SystemExit(result.returncode)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    if command == "run":
        run()
    elif command == "manage":
        manage_command(sys.argv[2:])
    elif command == "test":
        try:
            test(sys.argv[2:])
        except subprocess.CalledProcessError as exc:
            raise SystemExit(exc.returncode) from None
    else:
        print(__doc__)
        raise SystemExit(0 if command in {"help", "-h", "--help"} else 2)


if __name__ == "__main__":
    main()
