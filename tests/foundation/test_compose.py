"""docker-compose.yml is valid Compose and every service runs something that exists here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import compose_spec
import pytest
import yaml
from django.core.management import get_commands

from tests.support.services import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "web",
    "worker",
    "drift-worker",
    "beat",
    "emulator",
    "migrate",
}


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_file_validates_against_the_compose_specification() -> None:
    # PyYAML resolves the anchors and `<<` merges exactly as Compose does before validating.
    parsed = compose_spec.PyCompose.from_json(json.dumps(load_compose()))
    assert set(parsed.service_names()) == EXPECTED_SERVICES


def test_the_validator_really_rejects_an_invalid_file() -> None:
    broken = load_compose()
    broken["services"]["web"]["depends_on"]["redis"]["condition"] = "whenever"
    with pytest.raises(ValueError, match="whenever"):
        compose_spec.PyCompose.from_json(json.dumps(broken))


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _check_portal_command(command: list[str]) -> None:
    """Each service command must name a real entry point of this project."""
    program, *args = command
    if program == "python" and args[:1] == ["manage.py"]:
        assert args[1] in get_commands(), f"unknown management command {args[1]!r}"
    elif program == "python" and args[:1] == ["-m"]:
        assert _module_exists(args[1]), f"no module {args[1]!r}"
        assert (REPO_ROOT / Path(*args[1].split(".")) / "__main__.py").exists()
    elif program == "gunicorn":
        assert _module_exists(args[0]), f"no WSGI module {args[0]!r}"
    elif program == "celery":
        assert args[:2] == ["-A", "portal"] and args[2] in {"worker", "beat"}
        assert _module_exists("portal.celery")
    else:
        raise AssertionError(f"unexpected program {program!r} in {command}")


@pytest.mark.django_db
def test_every_service_command_exists_in_the_project() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        if service.get("image", "").startswith(("postgres:", "redis:")):
            continue
        command = service.get("command")
        assert command, f"service {name} has no command"
        _check_portal_command(command)


def test_dockerfile_installs_the_pinned_requirements_and_runs_gunicorn() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.txt -c constraints.txt" in dockerfile
    assert '"gunicorn", "portal.wsgi"' in dockerfile
    assert (REPO_ROOT / "constraints.txt").exists()


def test_the_web_server_uses_threaded_workers_so_long_exports_finish() -> None:
    """A sync gunicorn worker streaming a million-row audit export misses its heartbeat and is
    killed after --timeout (30 s): the benchmark saw the export cut at 224 000 rows. A gthread
    worker's main loop keeps the heartbeat while a thread streams."""
    web = load_compose()["services"]["web"]["command"]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for command in (" ".join(web), dockerfile):
        assert "--worker-class" in command and "gthread" in command
