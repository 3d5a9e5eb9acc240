"""Hand-over ids against the azurerm provider's import grammar (go-azure-helpers resourceids).

ARM (and the emulator, like it) answers a managed identity's id with `/resourcegroups/`; the
azurerm provider parses import ids case-sensitively and refuses that with `parsing segment
"staticResourceGroups": expected the segment "resourcegroups" to be "resourceGroups"`
(terraform-provider-azurerm#14456, #14853, PR #17751). Only the aws provider is installed on
these machines, so the grammar is restated here from the provider's id definitions
(hashicorp/pandora common ids: static segments compared exactly, user values anything but `/`).
"""

from __future__ import annotations

import re

import pytest

from identities.handover import handover_document
from identities.handover_spec import handover_spec_for
from identities.models import IdentityRequest
from identities.policy import RoleDraft
from provisioning.reconcile import reconcile_request
from tests.support.people import SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory, Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

Segment = tuple[str, str]  # ("static", literal) or ("value", name)


def static(literal: str) -> Segment:
    return ("static", literal)


def value(name: str) -> Segment:
    return ("value", name)


UAMI = [
    static("subscriptions"), value("subscriptionId"),
    static("resourceGroups"), value("resourceGroupName"),
    static("providers"), static("Microsoft.ManagedIdentity"),
    static("userAssignedIdentities"), value("userAssignedIdentityName"),
]  # fmt: skip
FIC = [*UAMI, static("federatedIdentityCredentials"), value("federatedIdentityCredentialName")]
ROLE_ASSIGNMENT_SUFFIX = [
    static("providers"), static("Microsoft.Authorization"),
    static("roleAssignments"), value("roleAssignmentName"),
]  # fmt: skip
KEY_VAULT = [
    static("subscriptions"), value("subscriptionId"),
    static("resourceGroups"), value("resourceGroupName"),
    static("providers"), static("Microsoft.KeyVault"), static("vaults"), value("vaultName"),
]  # fmt: skip


def parse(resource_id: str, grammar: list[Segment]) -> dict[str, str]:
    """go-azure-helpers' strict parse: each static segment exactly, each value non-empty."""
    parts = resource_id.split("/")
    assert parts[0] == "", f"{resource_id!r}: an id starts with '/'"
    parts = parts[1:]
    assert len(parts) == len(grammar), f"{resource_id!r}: {len(parts)} segments"
    values = {}
    for got, (kind, expected) in zip(parts, grammar, strict=True):
        if kind == "static":
            assert got == expected, (
                f'parsing segment "static{expected[0].upper()}{expected[1:]}": expected the '
                f'segment "{got}" to be "{expected}"'
            )
        else:
            assert got, f"{resource_id!r}: empty {expected}"
            values[expected] = got
    return values


def import_ids(terraform: str) -> dict[str, str]:
    return dict(re.findall(r'#   to = (\S+)\n#   id = "([^"]+)"', terraform))


def test_every_terraform_import_id_of_the_handover_parses_with_the_azurerm_grammar(
    sandbox: Sandbox, approved_request: ApprovedRequestFactory
) -> None:
    # A scope typed in lower case, as ARM itself prints them: accepted (ARM matches keywords
    # case-insensitively), and handed over canonical.
    typed_scope = (
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-payments"
        "/providers/microsoft.keyvault/vaults/kv-payments"
    )
    identity_request = approved_request(roles=(RoleDraft("Key Vault Secrets User", typed_scope),))
    reconcile_request(identity_request.pk)
    identity_request = IdentityRequest.objects.get(pk=identity_request.pk)
    assert identity_request.status == "ready", identity_request.last_error
    assert "/resourcegroups/" in sandbox.arm()["identities"].popitem()[1]["id"]  # as ARM says

    spec = handover_spec_for(identity_request)
    ids = import_ids(handover_document(spec).terraform)

    identity_id = ids.pop("azurerm_user_assigned_identity.workload")
    assert parse(identity_id, UAMI)["userAssignedIdentityName"] == spec.identity_name
    assert (
        parse(ids.pop("azurerm_federated_identity_credential.workload"), FIC)[
            "federatedIdentityCredentialName"
        ]
        == spec.fic_name
    )
    [(address, assignment_id)] = ids.items()
    assert address.startswith("azurerm_role_assignment.")
    parse(assignment_id, KEY_VAULT + ROLE_ASSIGNMENT_SUFFIX)
    assert identity_request.identity is not None
    assert identity_request.identity.resource_id == identity_id  # stored canonical too
    for assignment in spec.role_assignments:
        parse(assignment.scope, KEY_VAULT)
