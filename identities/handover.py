"""Hand-over material for a ready identity, as data the UI and API render.

Injected env vars, SDK minimums, the az CLI and Terraform equivalents of what the portal created,
and a troubleshooting table filled in with this identity's values. Pure functions; no Django.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from identities.manifests import USE_LABEL, HandoverSpec

# Where the webhook mounts the token depends on its version: the open-source webhook's
# /var/run/secrets/azure/tokens/azure-identity-token (azure-workload-identity pkg/webhook
# consts), the AKS-managed webhook's /var/run/secrets/azure/wi/token/azure-identity-token from
# v1.6.0 (azure-workload-identity commit d878231). An app reads $AZURE_FEDERATED_TOKEN_FILE.
TOKEN_FILE_PATH = "/var/run/secrets/azure/tokens/azure-identity-token"  # noqa: S105 (a path)
TOKEN_FILE_PATH_MANAGED = "/var/run/secrets/azure/wi/token/azure-identity-token"  # noqa: S105
TERRAFORM_AZURERM_MIN = "4.65.0"

RESTART_NOTE = (
    "Restart pods after changing the ServiceAccount annotation or the pod label: the webhook "
    "mutates pods only at creation, so running pods keep the old environment."
)
HARDENING_NOTE = (
    "The skeletons run as non-root with a read-only root filesystem and a writable /tmp; "
    "the image must set a non-root USER (numeric UID) or the pod will not start."
)


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str
    meaning: str


@dataclass(frozen=True)
class SdkMinimum:
    language: str
    package: str
    minimum_version: str


@dataclass(frozen=True)
class CliCommand:
    """One az command as argv; `shell` is the same command quoted for a POSIX shell."""

    purpose: str
    argv: tuple[str, ...]

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class TroubleshootingRow:
    key: str
    symptom: str
    cause: str
    fix: str


@dataclass(frozen=True)
class HandoverDocument:
    """Everything besides the manifests that a team needs to use and debug the identity."""

    env_vars: tuple[EnvVar, ...]
    sdk_minimums: tuple[SdkMinimum, ...]
    notes: tuple[str, ...]
    az_cli: tuple[CliCommand, ...]
    terraform: str
    troubleshooting: tuple[TroubleshootingRow, ...]

    @property
    def az_cli_script(self) -> str:
        # A newline in a purpose would end the comment and turn the rest into a command.
        return "".join(f"# {_one_line(c.purpose)}\n{c.shell}\n" for c in self.az_cli)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


# Minimum Azure Identity versions that ship WorkloadIdentityCredential and pick it up from
# DefaultAzureCredential: the table in MicrosoftDocs/azure-aks-docs
# articles/aks/workload-identity-overview.md, matching Azure/azure-workload-identity's
# docs/book/src/topics/language-specific-examples/azure-identity-sdk.md (release tags).
SDK_MINIMUMS: tuple[SdkMinimum, ...] = (
    SdkMinimum("Python", "azure-identity", "1.13.0"),
    SdkMinimum(".NET", "Azure.Identity", "1.9.0"),
    SdkMinimum("Go", "github.com/Azure/azure-sdk-for-go/sdk/azidentity", "1.3.0"),
    SdkMinimum("JavaScript / TypeScript", "@azure/identity", "3.2.0"),
    SdkMinimum("Java", "com.azure:azure-identity", "1.9.0"),
    SdkMinimum("C++", "azure-identity-cpp", "1.6.0"),
)


def handover_document(spec: HandoverSpec) -> HandoverDocument:
    """Assemble the hand-over for one identity."""
    return HandoverDocument(
        env_vars=injected_env_vars(spec),
        sdk_minimums=SDK_MINIMUMS,
        notes=(RESTART_NOTE, HARDENING_NOTE),
        az_cli=az_cli_commands(spec),
        terraform=terraform_snippet(spec),
        troubleshooting=troubleshooting_rows(spec),
    )


def injected_env_vars(spec: HandoverSpec) -> tuple[EnvVar, ...]:
    return (
        EnvVar(
            "AZURE_CLIENT_ID",
            spec.client_id,
            f"Client ID of {spec.identity_name}, from the ServiceAccount annotation.",
        ),
        EnvVar(
            "AZURE_TENANT_ID",
            spec.tenant_id,
            "Tenant of the identity, from the tenant-id annotation "
            "(else the webhook's configured tenant).",
        ),
        EnvVar(
            "AZURE_FEDERATED_TOKEN_FILE",
            TOKEN_FILE_PATH,
            "Projected ServiceAccount token (audience api://AzureADTokenExchange), refreshed "
            "by the kubelet; read it anew for each exchange, from this variable: the path "
            f"depends on the webhook (AKS's managed webhook from v1.6.0: "
            f"{TOKEN_FILE_PATH_MANAGED}).",
        ),
        EnvVar(
            "AZURE_AUTHORITY_HOST",
            spec.authority_host,
            "Microsoft Entra endpoint of the cluster's cloud, from the webhook configuration.",
        ),
    )


def _role_definition_id(spec: HandoverSpec, guid: str) -> str:
    subscription = f"/subscriptions/{spec.subscription_id}"
    return f"{subscription}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def az_cli_commands(spec: HandoverSpec) -> tuple[CliCommand, ...]:
    """The az commands that create exactly what the portal created, argument by argument."""
    create = [
        "az", "identity", "create",
        "--subscription", spec.subscription_id,
        "--resource-group", spec.resource_group,
        "--name", spec.identity_name,
        "--location", spec.location,
    ]  # fmt: skip
    if spec.tags:
        create += ["--tags", *(f"{key}={value}" for key, value in spec.tags.items())]
    commands = [
        CliCommand(f"User-assigned identity {spec.identity_name}", tuple(create)),
        CliCommand(
            f"Federated credential trusting {spec.fic_subject}",
            (
                "az", "identity", "federated-credential", "create",
                "--subscription", spec.subscription_id,
                "--resource-group", spec.resource_group,
                "--identity-name", spec.identity_name,
                "--name", spec.fic_name,
                "--issuer", spec.oidc_issuer_url,
                "--subject", spec.fic_subject,
                "--audiences", spec.audience,
            ),
        ),
    ]  # fmt: skip
    for assignment in spec.role_assignments:
        commands.append(
            CliCommand(
                f"{assignment.role_name} on {assignment.scope}",
                (
                    "az", "role", "assignment", "create",
                    "--name", assignment.name,
                    "--assignee-object-id", spec.principal_id,
                    "--assignee-principal-type", "ServicePrincipal",
                    "--role", assignment.role_definition_guid,
                    "--scope", assignment.scope,
                ),
            )
        )  # fmt: skip
    return tuple(commands)


def hcl_string(value: str) -> str:
    """A quoted HCL string literal whose value is exactly `value`, templates included."""
    out = []
    for index, char in enumerate(value):
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif char in "$%" and value[index + 1 : index + 2] == "{":
            out.append(char * 2)  # "$${" is HCL's literal "${", "%%{" its literal "%{"
        elif not char.isprintable():
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _hcl_attributes(pairs: list[tuple[str, str]], indent: str) -> list[str]:
    """Attributes with '=' aligned, as `terraform fmt` writes them."""
    width = max(len(key) for key, _ in pairs)
    return [f"{indent}{key.ljust(width)} = {value}" for key, value in pairs]


def _hcl_identifier(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "role"
    base = base if base[0].isalpha() else f"role_{base}"
    name, counter = base, 2
    while name in taken:
        name, counter = f"{base}_{counter}", counter + 1
    taken.add(name)
    return name


def terraform_snippet(spec: HandoverSpec) -> str:
    """azurerm resources equivalent to what the portal created, laid out as `terraform fmt` does."""
    identity = "azurerm_user_assigned_identity.workload"
    lines = [
        "# What the portal created, for transparency. The portal owns these resources: apply this",
        "# only after taking them over (uncomment the import blocks), or you will fight it.",
        "terraform {",
        "  required_providers {",
        "    azurerm = {",
        *_hcl_attributes(
            [("source", '"hashicorp/azurerm"'), ("version", f'">= {TERRAFORM_AZURERM_MIN}"')],
            "      ",
        ),
        "    }",
        "  }",
        "}",
        "",
        'resource "azurerm_user_assigned_identity" "workload" {',
        *_hcl_attributes(
            [
                ("name", hcl_string(spec.identity_name)),
                ("resource_group_name", hcl_string(spec.resource_group)),
                ("location", hcl_string(spec.location)),
            ],
            "  ",
        ),
    ]
    if spec.tags:
        lines += ["", "  tags = {"]
        lines += _hcl_attributes(
            [(hcl_string(key), hcl_string(value)) for key, value in spec.tags.items()], "    "
        )
        lines.append("  }")
    lines += [
        "}",
        "",
        'resource "azurerm_federated_identity_credential" "workload" {',
        *_hcl_attributes(
            [
                ("name", hcl_string(spec.fic_name)),
                ("user_assigned_identity_id", f"{identity}.id"),
                ("issuer", hcl_string(spec.oidc_issuer_url)),
                ("subject", hcl_string(spec.fic_subject)),
                ("audience", f"[{hcl_string(spec.audience)}]"),
            ],
            "  ",
        ),
        "}",
    ]
    imports = [
        (identity, spec.identity_resource_id),
        (
            "azurerm_federated_identity_credential.workload",
            f"{spec.identity_resource_id}/federatedIdentityCredentials/{spec.fic_name}",
        ),
    ]
    taken: set[str] = set()
    for assignment in spec.role_assignments:
        label = _hcl_identifier(assignment.role_name, taken)
        lines += [
            "",
            f"# {_one_line(assignment.role_name)}",
            f'resource "azurerm_role_assignment" "{label}" {{',
            *_hcl_attributes(
                [
                    ("name", hcl_string(assignment.name)),
                    ("scope", hcl_string(assignment.scope)),
                    (
                        "role_definition_id",
                        hcl_string(_role_definition_id(spec, assignment.role_definition_guid)),
                    ),
                    ("principal_id", f"{identity}.principal_id"),
                    ("principal_type", '"ServicePrincipal"'),
                    ("skip_service_principal_aad_check", "true"),
                ],
                "  ",
            ),
            "}",
        ]
        imports.append(
            (
                f"azurerm_role_assignment.{label}",
                f"{assignment.scope}/providers/Microsoft.Authorization/roleAssignments/{assignment.name}",
            )
        )
    for address, resource_id in imports:
        lines += [
            "",
            "# import {",
            f"#   to = {address}",
            f"#   id = {hcl_string(resource_id)}",
            "# }",
        ]
    return "\n".join(lines) + "\n"


def troubleshooting_rows(spec: HandoverSpec) -> tuple[TroubleshootingRow, ...]:
    """Known failures, each with this identity's values filled in."""
    sa = f"{spec.namespace}/{spec.service_account}"
    show_issuer = shlex.join(
        ["az", "aks", "show", "--subscription", spec.subscription_id,
         "-g", spec.cluster_resource_group, "-n", spec.cluster_name,
         "--query", "oidcIssuerProfile.issuerUrl", "-o", "tsv"]
    )  # fmt: skip
    show_fic = shlex.join(
        ["az", "identity", "federated-credential", "show", "--subscription", spec.subscription_id,
         "-g", spec.resource_group, "--identity-name", spec.identity_name, "-n", spec.fic_name]
    )  # fmt: skip
    list_roles = shlex.join(
        [
            "az",
            "role",
            "assignment",
            "list",
            "--all",
            "--assignee",
            spec.principal_id,
            "-o",
            "table",
        ]
    )
    granted = "; ".join(f"{a.role_name} on {a.scope}" for a in spec.role_assignments) or "none"
    restart = f"kubectl -n {shlex.quote(spec.namespace)} rollout restart deployment/{spec.app_name}"
    return (
        TroubleshootingRow(
            "AADSTS70021",
            "AADSTS70021: No matching federated identity record found for presented assertion.",
            f"The pod's token does not match credential {spec.fic_name} exactly: issuer "
            f"{spec.oidc_issuer_url!r} (a trailing slash counts), subject {spec.fic_subject!r}, "
            f"audience {spec.audience!r}. Right after creation it can also be propagation delay "
            "(Entra answers any of the codes 70021, 700211, 700213, 7002138 until then).",
            f"Compare `{show_issuer}` with `{show_fic}`; the message prints the assertion's "
            "issuer, subject and audience. If all match, wait a few minutes and retry; if they "
            "still match after that, delete and recreate the credential (repair).",
        ),
        TroubleshootingRow(
            "AADSTS700211",
            "AADSTS700211: No matching federated identity record found for presented "
            "assertion issuer '…'.",
            f"The token was issued by another issuer than {spec.oidc_issuer_url!r}: the pod runs "
            f"on a cluster other than {spec.cluster_name}, the cluster was recreated, or the "
            "issuer differs by a trailing slash.",
            f"Run the pod on {spec.cluster_name}; check `{show_issuer}` returns exactly the "
            "credential's issuer, and ask the portal to re-federate if the cluster changed.",
        ),
        TroubleshootingRow(
            "AADSTS700213",
            "AADSTS700213: No matching federated identity record found for presented "
            "assertion subject '…'.",
            f"The pod runs as another ServiceAccount or namespace than {sa}; the subject must "
            f"be exactly {spec.fic_subject!r} (case-sensitive).",
            f"Deploy into namespace {spec.namespace} with serviceAccountName: "
            f"{spec.service_account}, then restart the pods.",
        ),
        TroubleshootingRow(
            "AADSTS7002138",
            "AADSTS7002138: No matching federated identity record found for presented "
            "assertion subject '…'. The subject matches with case-insensitive comparison, but "
            "not with case-sensitive comparison.",
            f"The subject differs from {spec.fic_subject!r} only in upper/lower case; Entra "
            "compares subjects case-sensitively.",
            f"Use the namespace and ServiceAccount names exactly as {sa} (Kubernetes names are "
            "lower case); if the credential was typed by hand, ask the portal to repair it.",
        ),
        TroubleshootingRow(
            "AADSTS700024",
            "AADSTS700024: Client assertion is not within its valid time range.",
            "The ServiceAccount token presented had expired: the app read "
            "$AZURE_FEDERATED_TOKEN_FILE once and kept it, or the node clock is skewed. The "
            "token lives "
            f"{spec.token_expiration_seconds or 3600} s.",
            "Use an Azure Identity SDK at or above the minimum versions (they re-read the file); "
            "if you exchange tokens yourself, read the file for every exchange. Check NTP.",
        ),
        TroubleshootingRow(
            "AuthorizationFailed",
            f"HTTP 403 AuthorizationFailed: the client '{spec.client_id}' with object id "
            f"'{spec.principal_id}' does not have authorization to perform action …",
            f"Token exchange worked, but no role covers the action at that scope. Granted: "
            f"{granted}. New assignments also take a few minutes to apply.",
            f"Check `{list_roles}`; wait a few minutes after a change; request the missing role "
            "at the resource's scope through the portal (data-plane actions need data roles).",
        ),
        TroubleshootingRow(
            "missing-label",
            "AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE are absent in the container; the SDK "
            "reports WorkloadIdentityCredential unavailable or falls back to another credential.",
            f'The pod template lacks the label {USE_LABEL}: "true" (a string, on '
            "spec.template.metadata.labels, not on the Deployment or ServiceAccount), or the pod "
            "was created before the label was added.",
            f"Add the label to the pod template (as in the manifests above), then `{restart}`.",
        ),
        TroubleshootingRow(
            "wrong-service-account",
            "AZURE_CLIENT_ID missing or not "
            f"{spec.client_id}, or AADSTS700213 naming system:serviceaccount:{spec.namespace}:"
            "default.",
            f"serviceAccountName is not {spec.service_account} (omitted means 'default'), so the "
            "webhook reads another ServiceAccount's client-id annotation.",
            f"Set spec.template.spec.serviceAccountName: {spec.service_account}, then `{restart}`.",
        ),
        TroubleshootingRow(
            "env-override",
            f"AZURE_CLIENT_ID in the pod is not {spec.client_id} although the ServiceAccount is "
            "correct.",
            "The container already sets AZURE_CLIENT_ID (or another AZURE_* variable); the "
            "webhook never overwrites variables a container defines.",
            f"Remove the AZURE_* entries from the container's env list, then `{restart}`.",
        ),
    )
