"""The examples/ pipelines run as written (bash, curl, jq) against a live portal, with a local
issuer standing in for GitHub Actions' and Azure DevOps' token services: they file a request
with one fresh OIDC token per call, as the team's service principal, wait for it, and fetch its
manifests; a refused call stops them with the problem shown."""

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
    return step["run"], dict(job["env"])


def azure_devops_script() -> tuple[str, dict[str, str]]:
    pipeline = yaml.safe_load((EXAMPLES / "azure-pipelines.yml").read_text())
    step = next(step for step in pipeline["steps"] if "bash" in step)
    return step["bash"], dict(pipeline["variables"])


def run_until_filed(
    script: str, env: dict[str, str], cwd: Path, approver: Any
) -> subprocess.CompletedProcess[str]:
    """Start the script; once its request is filed, approve it and record it provisioned (no
    Azure here), then let the script's next poll find it ready."""
    (cwd / "request.json").write_text(json.dumps(new_request_body()))
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
    stdout, stderr = process.communicate(timeout=60)
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

    result = run_until_filed(
        script,
        {
            **env,
            "API": portal,
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{oidc_issuer.url}/token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": oidc_issuer.job_token,
            "GITHUB_RUN_ID": "4711",
        },
        tmp_path,
        approver,
    )

    assert result.returncode == 0, result.stderr
    assert "svc:payments/deploy-pipeline" in result.stdout
    identity_request = IdentityRequest.objects.get()
    assert identity_request.requester.get_username() == "svc:payments/deploy-pipeline"
    assert "kind: ServiceAccount" in (tmp_path / "manifests.yaml").read_text()
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
    env = {
        **variables,
        "API": portal,
        "SYSTEM_OIDCREQUESTURI": f"{oidc_issuer.url}/oidctoken",
        "SYSTEM_ACCESSTOKEN": oidc_issuer.job_token,
        "BUILD_BUILDID": "815",
        "BUILD_ARTIFACTSTAGINGDIRECTORY": str(tmp_path),
    }

    result = run_until_filed(script, env, tmp_path, approver)

    assert result.returncode == 0, result.stderr
    assert IdentityRequest.objects.get().requester.get_username() == "svc:payments/ado-release"
    assert "kind: ServiceAccount" in (tmp_path / "manifests.yaml").read_text()

    # Another service connection's token: refused, the script says why and fails.
    oidc_issuer.job_claims["sub"] = "sc://contoso/payments/someone-else"
    refused = subprocess.run(
        ["/usr/bin/bash", "-c", script],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "answered 401" in refused.stderr
    assert "match no trust rule" in refused.stderr
