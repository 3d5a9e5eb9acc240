"""The examples/ pipelines' steps run as written (bash, curl, jq, examples/pipeline.sh) against
a live portal, with a local issuer standing in for GitHub Actions' and Azure DevOps' token
services: they file a request with one fresh OIDC token per call (PORTAL_TOKEN_COMMAND), as the
team's service principal, wait for it, and keep its manifests; a refused call stops them with
the problem shown."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from accounts.machines import trust_rule_create
from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import approve, make_ready, new_request_body
from tests.support.oidc_issuer import LocalIssuer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def github_script() -> tuple[str, dict[str, str]]:
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    job = workflow["jobs"]["request-identity"]
    assert workflow["permissions"]["id-token"] == "write"
    step = next(step for step in job["steps"] if "run" in step)
    return step["run"], {**job["env"], **step["env"]}


def azure_devops_script() -> tuple[str, dict[str, str]]:
    pipeline = yaml.safe_load((EXAMPLES / "azure-pipelines.yml").read_text())
    step = next(step for step in pipeline["steps"] if "bash" in step)
    return step["bash"], {**pipeline["variables"], **step["env"]}


def checkout(tmp_path: Path) -> Path:
    """A job's working directory: the repository's examples/ and the request to file."""
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    (workdir / "examples").symlink_to(EXAMPLES)
    (workdir / "request.json").write_text(json.dumps(new_request_body()))
    return workdir


def run_until_filed(
    script: str, env: dict[str, str], cwd: Path, approver: Any
) -> subprocess.CompletedProcess[str]:
    """Start the step; once its request is filed, approve it and record it provisioned (no
    Azure here), then let the script's long-poll find it ready."""
    process = subprocess.Popen(
        ["/usr/bin/bash", "-c", script],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not IdentityRequest.objects.exists() and process.poll() is None:
        assert time.monotonic() < deadline, "the example filed nothing"
        time.sleep(0.2)
    if process.poll() is None:
        make_ready(approve(IdentityRequest.objects.get(), approver))
    stdout, stderr = process.communicate(timeout=90)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture
def portal(live_server: Any, cluster: Any, catalog: Any) -> str:
    return f"{live_server.url}/api/v1"


def test_the_github_actions_example_files_as_the_service_principal_without_a_secret(
    portal: str,
    oidc_issuer: LocalIssuer,
    requester: Any,
    team: Any,
    approver: Any,
    tmp_path: Path,
) -> None:
    script, env = github_script()
    trust_rule_create(
        actor=requester,
        team=team,
        service_principal="deploy-pipeline",
        name="production",
        issuer=oidc_issuer.url,
        audience=env["AUDIENCE"],
        subject="repo:contoso/payments:environment:production",
        claims={"repository": "contoso/payments"},
        scopes=["read", "request"],
    )
    oidc_issuer.job_claims = {"sub": "repo:contoso/payments:environment:production"}

    workdir = checkout(tmp_path)
    result = run_until_filed(
        script,
        {
            **env,
            "PORTAL_API": portal,
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{oidc_issuer.url}/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": oidc_issuer.job_token,
            "GITHUB_RUN_ID": "4711",
        },
        workdir,
        approver,
    )

    assert result.returncode == 0, result.stderr
    identity_request = IdentityRequest.objects.get()
    assert identity_request.requester.get_username() == "svc:payments/deploy-pipeline"
    assert "kind: ServiceAccount" in (workdir / "manifests.yaml").read_text()
    # One fresh token per call: the filing, at least one poll, the manifests.
    assert oidc_issuer.tokens_handed_out >= 3
    assert not AuditEvent.objects.filter(action="oidc_token.refused").exists()


def test_the_azure_devops_example_stops_on_a_refusal_and_shows_the_problem(
    portal: str,
    oidc_issuer: LocalIssuer,
    requester: Any,
    team: Any,
    approver: Any,
    tmp_path: Path,
) -> None:
    script, variables = azure_devops_script()
    rule = {
        "actor": requester,
        "team": team,
        "service_principal": "ado-release",
        "name": "release connection",
        "issuer": oidc_issuer.url,
        "audience": "api://AzureADTokenExchange",
        "subject": "sc://contoso/payments/portal-payments",
        "scopes": ["read", "request"],
    }
    trust_rule_create(**rule)
    oidc_issuer.job_claims = {
        "sub": "sc://contoso/payments/portal-payments",
        "aud": "api://AzureADTokenExchange",
    }
    workdir = checkout(tmp_path)
    env = {
        **variables,
        "PORTAL_API": portal,
        "SYSTEM_OIDCREQUESTURI": f"{oidc_issuer.url}/oidctoken",
        "SYSTEM_ACCESSTOKEN": oidc_issuer.job_token,
        "CI_PIPELINE_ID": "815",
        "BUILD_ARTIFACTSTAGINGDIRECTORY": str(tmp_path),
    }

    result = run_until_filed(script, env, workdir, approver)

    assert result.returncode == 0, result.stderr
    assert IdentityRequest.objects.get().requester.get_username() == "svc:payments/ado-release"
    assert "kind: ServiceAccount" in (tmp_path / "manifests.yaml").read_text()

    # Another service connection's token: refused, the script says why and fails.
    oidc_issuer.job_claims["sub"] = "sc://contoso/payments/someone-else"
    refused = subprocess.run(
        ["/usr/bin/bash", "-c", script],
        cwd=workdir,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2  # pipeline.sh: the portal refused
    assert "answered HTTP 401" in refused.stderr
    assert "match no trust rule" in refused.stderr


def test_a_token_command_that_prints_nothing_stops_the_script_with_exit_1(
    tmp_path: Path,
) -> None:
    workdir = checkout(tmp_path)

    result = subprocess.run(
        ["/usr/bin/bash", "examples/pipeline.sh", "request.json"],
        cwd=workdir,
        env={
            "PATH": os.environ["PATH"],
            "PORTAL_API": "http://127.0.0.1:9/api/v1",
            "PORTAL_TOKEN_COMMAND": "exit 3",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 1
    assert "PORTAL_TOKEN_COMMAND printed no token" in result.stderr
