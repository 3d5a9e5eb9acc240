"""The emulator as a process: start-up files, persistence across restarts, env knobs, state."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from azure.mgmt.msi.models import Identity

from tests.emulator.conftest import RG
from tests.support.emulator import ARM_SCOPE, Emulator, build_azure_clients, start_emulator


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_start_up_announces_the_url_and_keeps_secrets_private(emulator: Emulator) -> None:
    log = emulator.process.log_path.read_text()
    assert f"EMULATOR READY {emulator.url}\n" in log
    assert emulator.url.startswith("https://127.0.0.1:") and emulator.port > 0
    assert (emulator.state_dir / "url").read_text().strip() == emulator.url
    for private in ("ca-key.pem", "server-key.pem", "portal-client.json", "state.json"):
        assert mode(emulator.state_dir / private) == 0o600, private
    assert set(emulator.portal_client) == {"tenant_id", "client_id", "client_secret"}


def test_state_shows_resources_without_private_keys(emulator: Emulator) -> None:
    cluster = emulator.register_cluster()
    state = emulator.control("GET", "state")
    assert state["tenant_id"] == emulator.tenant_id
    assert set(state["clusters"][cluster["id"]]) >= {"issuer_url", "name"}
    assert "key" not in state["clusters"][cluster["id"]]
    assert "token" not in state["clusters"][cluster["id"]]
    assert emulator.portal_client["client_secret"] not in str(state)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    emulator = start_emulator(
        tmp_path / "state",
        tmp_path / "emulator.log",
        env={"EMULATOR_FIC_LIMIT": "7", "EMULATOR_FAULT_OPS": "PUT,GET"},
    )
    try:
        assert emulator.control("GET", "config")["fic_limit"] == 7
        assert emulator.control("GET", "config")["fault_ops"] == ["PUT", "GET"]
        clients = build_azure_clients(emulator)
        made = clients.msi.user_assigned_identities.create_or_update(
            RG, "id-kept", Identity(location="eastus")
        )
        cluster = emulator.register_cluster()
        token = clients.credential.get_token(ARM_SCOPE).token
        ca_before, tenant_before = emulator.ca_path.read_bytes(), emulator.tenant_id

        emulator.restart()

        assert emulator.ca_path.read_bytes() == ca_before
        assert emulator.tenant_id == tenant_before
        assert (
            emulator.control("GET", "clusters")["value"][0]["issuer_url"] == cluster["issuer_url"]
        )
        # The same credential, CA and access token keep working after the restart.
        kept = clients.msi.user_assigned_identities.get(RG, "id-kept")
        assert (kept.client_id, kept.principal_id) == (made.client_id, made.principal_id)
        assert clients.credential.get_token(ARM_SCOPE).token == token
    finally:
        emulator.stop()
    assert not (tmp_path / "state" / "url").exists()


def test_the_emulator_imports_nothing_from_the_portal() -> None:
    probe = (
        "import sys, azure_emulator.__main__; "
        "bad = sorted(m for m in sys.modules"
        " if m.split('.')[0] in {'django', 'portal', 'identities', 'provisioning', 'accounts',"
        " 'web', 'api'});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
