"""What the benchmarks share: their own databases, the emulator process, the az-style sequential
path, statistics, peak memory of processes, machine facts and the JSON they hand to run.py."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
# The database api_bench.py seeds and audit_bench.py / web_bench.py read.
API_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", f"{DEFAULT_SERVER_URL}bench_api")
# Key Vault Secrets User: the data-plane role every benchmark request asks for.
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


# --- databases ----------------------------------------------------------------------------------


def database_url(server_url: str, name: str) -> str:
    """`server_url` with its database name replaced by `name`."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def _admin(url: str) -> tuple[Any, str]:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to use database {name!r}: its name must contain 'bench'")
    admin = psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True)
    return admin, name


def prepare_database(url: str, *, reseed: bool = False) -> bool:
    """Create the benchmark's own database (drop it first with `reseed`). True if it is new."""
    admin, name = _admin(url)
    with admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and reseed:
            print(f"dropping database {name}", flush=True)
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            print(f"creating database {name}", flush=True)
            admin.execute(f'CREATE DATABASE "{name}"')
    return not exists


def drop_database(url: str) -> None:
    admin, name = _admin(url)
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the emulator -------------------------------------------------------------------------------


@dataclass
class Emulator:
    """An emulator process the benchmark started (`python -m azure_emulator`)."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    url: str

    @property
    def ca(self) -> str:
        return str(self.state_dir / "ca.pem")

    def control(self, method: str, path: str, body: Any = None) -> Any:
        import requests

        response = requests.request(
            method, f"{self.url}/_emulator/{path}", json=body, verify=self.ca, timeout=60
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def register_scopes(self, scopes: Iterable[str]) -> None:
        """Add the resources to the emulator's inventory: ARM (and the emulator) answer 404 to
        a role assignment on a resource that does not exist."""
        resources = [{"id": scope, "location": "westeurope"} for scope in scopes]
        if resources:
            self.control("POST", "resources", {"resources": resources})

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        """The request log from line `since` on, read from the state folder (no HTTP)."""
        lines = (self.state_dir / "requests.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines[since:] if line.strip()]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_emulator(state_dir: Path, **knobs: object) -> Emulator:
    """Start an emulator on a free port with the given knobs (EMULATOR_<KNOB> at start)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")}
    env.update({f"EMULATOR_{name.upper()}": str(value) for name, value in knobs.items()})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "azure_emulator",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url_file = state_dir / "url"
    deadline = time.monotonic() + 60
    while not url_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the emulator did not start")
        time.sleep(0.1)
    return Emulator(process, state_dir, url_file.read_text().strip())


def is_arm_write(entry: dict[str, Any]) -> bool:
    """A request-log entry that is an ARM write (what the write throttle counts)."""
    return entry["method"] in {"PUT", "PATCH", "DELETE"} and entry["path"].startswith(
        "/subscriptions/"
    )


# --- processes the benchmark starts ------------------------------------------------------------


@dataclass
class Started:
    """A process (and its group: a Celery worker's pool children, gunicorn's workers)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{self.name} did not get ready:\n{tail}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def start_process(name: str, args: list[str], env: dict[str, str], log_path: Path) -> Started:
    """Start `args` in a new session (so stop() reaches its children), output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Started(name, popen, log_path)


def venv_executable(name: str) -> str:
    """A console script beside this interpreter (celery, gunicorn)."""
    return str(Path(sys.executable).with_name(name))


# --- the manual path: az commands one after another ---------------------------------------------


def _put_fic(msi: Any, cluster: Any, name: str) -> Any:
    """`az identity federated-credential create` for the payments ServiceAccount `name`."""
    from azure.mgmt.msi.models import FederatedIdentityCredential

    return msi.federated_identity_credentials.create_or_update(
        cluster.resource_group,
        name,
        "fic",
        FederatedIdentityCredential(
            issuer=cluster.oidc_issuer_url,
            subject=f"system:serviceaccount:payments:{name}",
            audiences=["api://AzureADTokenExchange"],
        ),
    )


def _put_role_assignment(authorization: Any, cluster: Any, scope: str, principal_id: str) -> Any:
    """`az role assignment create` of Key Vault Secrets User on `scope`."""
    from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

    return authorization.role_assignments.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{cluster.subscription_id}/providers/Microsoft."
            f"Authorization/roleDefinitions/{KEY_VAULT_SECRETS_USER}",
            principal_id=principal_id,
            principal_type="ServicePrincipal",
        ),
    )


def az_style_identity(
    msi: Any, authorization: Any, cluster: Any, name: str, scopes: list[str]
) -> None:
    """What a script of az commands does for one app in the payments namespace of `cluster`,
    call after call through the same SDK: `az identity create`, `az identity
    federated-credential create`, then one `az role assignment create` per scope (without az's
    extra reads and process start-up, which would only make this baseline slower)."""
    from azure.mgmt.msi.models import Identity

    identity = msi.user_assigned_identities.create_or_update(
        cluster.resource_group, name, Identity(location=cluster.location)
    )
    _put_fic(msi, cluster, name)
    for scope in scopes:
        _put_role_assignment(authorization, cluster, scope, identity.principal_id)


def floor_identity(
    msi: Any,
    authorization: Any,
    cluster: Any,
    name: str,
    scopes: list[str],
    pool: Any,
) -> None:
    """The physical floor of the portal's path, measured: the same SDK calls in the portal's
    order with nothing else (no database, no audit, no approval): the identity's PUT, then its
    FIC and every role assignment at once on `pool` (a warm ThreadPoolExecutor with a thread per
    call). What the portal takes above this is its own work."""
    from azure.mgmt.msi.models import Identity

    identity = msi.user_assigned_identities.create_or_update(
        cluster.resource_group, name, Identity(location=cluster.location)
    )
    futures = [pool.submit(_put_fic, msi, cluster, name)] + [
        pool.submit(_put_role_assignment, authorization, cluster, scope, identity.principal_id)
        for scope in scopes
    ]
    for future in futures:
        future.result()


def emulator_portal_env(emulator: Emulator, database: str, work: Path) -> dict[str, str]:
    """Environment for a portal process (this one or a worker) on `database` and the emulator,
    verification after provisioning off (the benchmarks count ARM writes)."""
    return {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database,
        "PORTAL_VAR_DIR": str(work / "var"),
        "AZURE_MODE": "emulator",
        "EMULATOR_URL": emulator.url,
        "EMULATOR_STATE_DIR": str(emulator.state_dir),
        "VERIFY_AFTER_PROVISIONING": "0",
        "LOG_LEVEL": "WARNING",
        # Required with DEBUG off (webhook secrets are encrypted at rest). A Fernet key derived
        # from the run's directory: every process of one run (workers too) gets the same key.
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(
            hashlib.sha256(str(work).encode()).digest()
        ).decode(),
    }


def sandbox_portal() -> tuple[Any, Any, Any]:
    """Set up Django on the configured database: migrate, load the demo data and register the
    sandbox cluster with the emulator. Returns (requester alice, approver sam, the cluster)."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from identities.models import Cluster

    call_command("migrate", verbosity=0)
    with open(os.devnull, "w") as quiet:
        call_command("seed_demo", "--force", stdout=quiet, stderr=quiet)
    users = get_user_model().objects
    return (
        users.get(username="alice"),
        users.get(username="sam"),
        Cluster.objects.get(name="aks-sandbox"),
    )


def bench_draft(cluster: Any, name: str, k: int, tag: str) -> Any:
    """A new-identity request for app `name` in the payments namespace with k vault roles."""
    from identities.policy import RequestDraft, RoleDraft

    return RequestDraft(
        kind="new",
        team="payments",
        cluster=cluster.name,
        namespace="payments",
        service_account=name,
        app_name=name,
        roles=tuple(
            RoleDraft("Key Vault Secrets User", scope)
            for scope in vault_scopes(cluster.subscription_id, k, tag)
        ),
        justification="Benchmark run.",
    )


def vault_scopes(subscription: str, k: int, tag: str) -> list[str]:
    """k distinct Key Vault scopes for one request, in team payments' own resource group (seed_demo
    records it as theirs), so the requests are ordinary, not cross-team or unowned."""
    return [
        f"/subscriptions/{subscription}/resourceGroups/rg-payments"
        f"/providers/Microsoft.KeyVault/vaults/kv-{tag}-{n}"
        for n in range(k)
    ]


# --- statistics ---------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# --- memory -------------------------------------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status, e.g. VmHWM (peak resident set) or VmRSS."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (all its threads' children)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children.extend(int(child) for child in text)
    return children


def peak_rss(pid: int) -> dict[str, Any]:
    """Peak RSS (VmHWM, MiB) of a process and of each of its direct children, now."""
    return {
        "pid": pid,
        "peak_mib": round(proc_status_kib(pid, "VmHWM") / 1024, 1),
        "children_peak_mib": [
            round(proc_status_kib(child, "VmHWM") / 1024, 1) for child in child_pids(pid)
        ],
    }


class PeakSampler(threading.Thread):
    """Samples VmHWM of a process and its children every `interval` seconds, keeping each
    pid's highest value: a child that is replaced during the run (gunicorn kills a worker past
    its timeout) keeps its peak in the figures."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peaks: dict[int, int] = {}
        self._stop_event = threading.Event()

    def _sample(self) -> None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for pid in [self.pid, *child_pids(self.pid)]:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    self.peaks[pid] = max(self.peaks.get(pid, 0), proc_status_kib(pid, "VmHWM"))

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self._sample()

    def result(self) -> dict[str, Any]:
        """Stop sampling; the same shape as peak_rss()."""
        self._stop_event.set()
        self.join()
        self._sample()
        return {
            "pid": self.pid,
            "peak_mib": round(self.peaks.get(self.pid, 0) / 1024, 1),
            "children_peak_mib": [
                round(kib / 1024, 1) for pid, kib in self.peaks.items() if pid != self.pid
            ],
        }


# --- machine facts and results ------------------------------------------------------------------


def machine_info(*, database_url: str = "", redis_url: str = "") -> dict[str, Any]:
    """CPU, memory, OS, Python, PostgreSQL and Redis versions of this machine."""
    cpu_model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu_model = match.group(1).strip() if match else ""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model or platform.processor(),
        "ram_gib": round(proc_meminfo_kib("MemTotal") / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": "",
        "redis": "",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if database_url:
        import psycopg

        with psycopg.connect(database_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgresql"] = row[0] if row else ""
    if redis_url:
        import redis

        info["redis"] = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    return info


def proc_meminfo_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def publish(output: str, text: str, json_path: str, data: dict[str, Any]) -> None:
    """Write a benchmark's markdown report, its JSON for run.py, and print the report."""
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text)
    write_json(json_path, data)
    print(text)


def write_json(path: str, data: dict[str, Any]) -> None:
    """The machine-readable result run.py collects (`--json PATH` on every benchmark)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
