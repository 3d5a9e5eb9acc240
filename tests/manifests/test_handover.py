"""Hand-over material: env vars, SDK minimums, az CLI and Terraform equivalents, troubleshooting."""

from __future__ import annotations

import base64
import json
import os
import random
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from identities.handover import (
    RESTART_NOTE,
    handover_document,
    hcl_string,
    terraform_snippet,
)
from identities.manifests import RoleAssignmentSpec
from tests.manifests.factories import (
    IDENTITY_ID,
    KEY_VAULT_SECRETS_USER,
    ODD_TAGS,
    STORAGE_BLOB_DATA_READER,
    SUBSCRIPTION,
    make_spec,
)


def test_the_injected_env_vars_hold_this_identitys_values() -> None:
    spec = make_spec()
    env = {var.name: var.value for var in handover_document(spec).env_vars}
    assert env == {
        "AZURE_CLIENT_ID": spec.client_id,
        "AZURE_TENANT_ID": spec.tenant_id,
        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
    }


def test_sdk_minimums_name_the_first_workload_identity_releases() -> None:
    minimums = {m.package: m.minimum_version for m in handover_document(make_spec()).sdk_minimums}
    assert minimums == {
        "azure-identity": "1.13.0",
        "Azure.Identity": "1.9.0",
        "github.com/Azure/azure-sdk-for-go/sdk/azidentity": "1.3.0",
        "@azure/identity": "3.2.0",
        "com.azure:azure-identity": "1.9.0",
        "azure-identity-cpp": "1.6.0",
    }


def test_the_notes_say_to_restart_pods_because_the_webhook_acts_only_at_creation() -> None:
    notes = handover_document(make_spec()).notes
    assert RESTART_NOTE in notes
    assert "only at creation" in RESTART_NOTE


def test_az_cli_recreates_exactly_the_identity_credential_and_roles() -> None:
    spec = make_spec(tags={"owner": "team-a"})
    identity, credential, *roles = handover_document(spec).az_cli
    assert identity.argv == (
        "az", "identity", "create", "--subscription", SUBSCRIPTION,
        "--resource-group", "rg-identities", "--name", "id-team-a-orders",
        "--location", "westeurope", "--tags", "owner=team-a",
    )  # fmt: skip
    assert credential.argv == (
        "az", "identity", "federated-credential", "create", "--subscription", SUBSCRIPTION,
        "--resource-group", "rg-identities", "--identity-name", "id-team-a-orders",
        "--name", "fic-team-a-orders-api", "--issuer", spec.oidc_issuer_url,
        "--subject", "system:serviceaccount:team-a:orders-api",
        "--audiences", "api://AzureADTokenExchange",
    )  # fmt: skip
    assert [role.argv for role in roles] == [
        (
            "az", "role", "assignment", "create", "--name", assignment.name,
            "--assignee-object-id", spec.principal_id,
            "--assignee-principal-type", "ServicePrincipal",
            "--role", assignment.role_definition_guid, "--scope", assignment.scope,
        )
        for assignment in (KEY_VAULT_SECRETS_USER, STORAGE_BLOB_DATA_READER)
    ]  # fmt: skip


def test_az_cli_leaves_out_tags_when_there_are_none() -> None:
    (identity, _credential) = handover_document(make_spec(tags={}, role_assignments=())).az_cli
    assert "--tags" not in identity.argv


def test_odd_tags_are_quoted_so_shlex_splits_them_back() -> None:
    doc = handover_document(make_spec(tags=ODD_TAGS))
    identity = doc.az_cli[0]
    assert shlex.split(identity.shell) == list(identity.argv)
    assert [f"{key}={value}" for key, value in ODD_TAGS.items()] == list(
        identity.argv[identity.argv.index("--tags") + 1 :]
    )


def test_odd_values_survive_a_real_shell(tmp_path: Path) -> None:
    spec = make_spec(tags=ODD_TAGS, identity_name="id $(touch pwned) `touch pwned`")
    doc = handover_document(spec)
    # A stand-in `az` prints each argument NUL-terminated, with a marker after each command.
    script = "az() { printf '%s\\0' az \"$@\" END; }\n" + doc.az_cli_script
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, check=True)
    expected = [arg for command in doc.az_cli for arg in (*command.argv, "END")]
    assert result.stdout.decode().split("\0")[:-1] == expected
    assert not (tmp_path / "pwned").exists()


def test_a_line_break_in_a_purpose_cannot_become_a_command() -> None:
    role = RoleAssignmentSpec(
        role_name="Reader\nrm -rf ~",
        role_definition_guid=KEY_VAULT_SECRETS_USER.role_definition_guid,
        scope=KEY_VAULT_SECRETS_USER.scope,
        name=KEY_VAULT_SECRETS_USER.name,
    )
    script = handover_document(make_spec(role_assignments=(role,))).az_cli_script
    assert "\nrm -rf ~" not in script
    assert all(line.startswith(("# ", "az ")) for line in script.splitlines())


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\dir", '"C:\\\\dir"'),
        ("${var.x}", '"$${var.x}"'),
        ("%{ if x }", '"%%{ if x }"'),
        ("$HOME and 100%", '"$HOME and 100%"'),
        ("a\nb\tc", '"a\\nb\\tc"'),
        ("bell\x07", '"bell\\u0007"'),
    ],
)
def test_hcl_strings_escape_quotes_backslashes_and_templates(value: str, literal: str) -> None:
    assert hcl_string(value) == literal


def test_the_terraform_snippet_declares_what_was_created() -> None:
    spec = make_spec(tags=ODD_TAGS)
    snippet = terraform_snippet(spec)
    assert 'resource "azurerm_user_assigned_identity" "workload"' in snippet
    assert 'resource "azurerm_federated_identity_credential" "workload"' in snippet
    assert "user_assigned_identity_id = azurerm_user_assigned_identity.workload.id" in snippet
    assert f"issuer                    = {hcl_string(spec.oidc_issuer_url)}" in snippet
    assert 'audience                  = ["api://AzureADTokenExchange"]' in snippet
    for key, value in ODD_TAGS.items():
        assert f"{hcl_string(key)}" in snippet
        assert f"= {hcl_string(value)}" in snippet
    assert snippet.count('resource "azurerm_role_assignment"') == 2
    for assignment in spec.role_assignments:
        assert f'name                             = "{assignment.name}"' in snippet
        assert (
            f'role_definition_id               = "/subscriptions/{SUBSCRIPTION}/providers/'
            f'Microsoft.Authorization/roleDefinitions/{assignment.role_definition_guid}"'
        ) in snippet
    assert snippet.count('principal_type                   = "ServicePrincipal"') == 2
    assert snippet.count("skip_service_principal_aad_check = true") == 2
    assert f'#   id = "{IDENTITY_ID}"' in snippet


def test_a_raw_template_sequence_never_reaches_the_terraform_text() -> None:
    snippet = terraform_snippet(make_spec(tags=ODD_TAGS, identity_name="id-${oops}"))
    # Every "${" or "%{" in the text must be the escaped form, i.e. preceded by its twin.
    for sequence in ("${", "%{"):
        start = 0
        while (index := snippet.find(sequence, start)) != -1:
            assert snippet[index - 1] == sequence[0], snippet[index - 10 : index + 10]
            start = index + 2


def terraform_or_skip() -> str:
    # Terraform is an optional cross-check here, not a service the project installs.
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed; the HCL checks above still ran")
    return terraform


def run_terraform(terraform: str, args: list[str], cwd: Path, stdin: str = "") -> str:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"}
    result = subprocess.run(
        [terraform, *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=env,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def test_terraform_reads_every_escaped_string_back_unchanged(tmp_path: Path) -> None:
    terraform = terraform_or_skip()
    rng = random.Random(20260901)
    alphabet = '$%{}"\\\n\t\r ab☕\x01~'
    values = [*ODD_TAGS, *ODD_TAGS.values(), "$${x}", "$$${x}", "%%{x}", "$", "%", "${", "{$}"]
    values += ["".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(300)]
    body = ",\n".join(f"    {hcl_string(value)}" for value in values)
    (tmp_path / "main.tf").write_text(f"locals {{\n  values = [\n{body}\n  ]\n}}\n")
    out = run_terraform(terraform, ["console"], tmp_path, "base64encode(jsonencode(local.values))")
    assert json.loads(base64.b64decode(out.strip().strip('"'))) == values


def test_the_terraform_snippet_is_already_terraform_fmt_clean(tmp_path: Path) -> None:
    terraform = terraform_or_skip()
    (tmp_path / "main.tf").write_text(terraform_snippet(make_spec(tags=ODD_TAGS)))
    run_terraform(terraform, ["fmt", "-check", "-diff", "main.tf"], tmp_path)


def test_troubleshooting_covers_the_known_failures() -> None:
    rows = handover_document(make_spec()).troubleshooting
    assert [row.key for row in rows] == [
        "AADSTS70021",
        "AADSTS700211",
        "AADSTS700213",
        "AADSTS7002138",
        "AADSTS700024",
        "AuthorizationFailed",
        "missing-label",
        "wrong-service-account",
        "env-override",
    ]
    assert all(row.symptom and row.cause and row.fix for row in rows)


def test_troubleshooting_rows_use_this_identitys_values() -> None:
    spec = make_spec(token_expiration_seconds=7200)
    rows = {row.key: row for row in handover_document(spec).troubleshooting}
    no_record = rows["AADSTS70021"]
    assert spec.oidc_issuer_url in no_record.cause
    assert "trailing slash" in no_record.cause
    assert spec.fic_name in no_record.cause
    assert "az aks show" in no_record.fix
    assert "oidcIssuerProfile.issuerUrl" in no_record.fix
    assert spec.oidc_issuer_url in rows["AADSTS700211"].cause
    assert spec.cluster_name in rows["AADSTS700211"].cause
    assert "system:serviceaccount:team-a:orders-api" in rows["AADSTS700213"].cause
    assert "serviceAccountName: orders-api" in rows["AADSTS700213"].fix
    assert "system:serviceaccount:team-a:orders-api" in rows["AADSTS7002138"].cause
    assert "case-sensitively" in rows["AADSTS7002138"].cause
    # The variable, not one path: where the webhook mounts the token depends on its version.
    assert "$AZURE_FEDERATED_TOKEN_FILE" in rows["AADSTS700024"].cause
    assert "7200 s" in rows["AADSTS700024"].cause
    denied = rows["AuthorizationFailed"]
    assert spec.client_id in denied.symptom
    assert spec.principal_id in denied.symptom
    assert "Key Vault Secrets User on " + KEY_VAULT_SECRETS_USER.scope in denied.cause
    assert spec.principal_id in denied.fix
    label = rows["missing-label"]
    assert 'azure.workload.identity/use: "true"' in label.cause
    assert "kubectl -n team-a rollout restart deployment/orders-api" in label.fix
    assert "serviceAccountName: orders-api" in rows["wrong-service-account"].fix
    assert spec.client_id in rows["env-override"].symptom
