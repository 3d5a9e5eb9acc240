"""Print the least-privilege az commands for the portal's own identity in real Azure.

The RBAC Administrator condition is generated from the role catalog, so the portal can assign
exactly the catalog's non-privileged roles and nothing else.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from django.core.management.base import BaseCommand

from identities.models import CatalogRole, Cluster

MANAGED_IDENTITY_CONTRIBUTOR = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
AKS_CLUSTER_USER = "4abbcc35-e782-43d8-92c5-2d3f1bd2253f"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"  # AZURE-FACTS §5


def assignable_condition(guids: list[str]) -> str:
    """ABAC condition: role assignment writes and deletes only for the listed role GUIDs."""
    listed = ", ".join(guids)
    return (
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
        "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
        f"ForAnyOfAnyValues:GuidEquals {{{listed}}})) AND "
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
        "(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
        f"ForAnyOfAnyValues:GuidEquals {{{listed}}}))"
    )


# A placeholder the reader's shell fills in ($PORTAL_PRINCIPAL_ID, $SUBSCRIPTION_ID): quoted so
# that it still expands (shlex.quote's single quotes would hand az the literal text).
_PLACEHOLDER = re.compile(r"[A-Za-z0-9/_.-]*\$[A-Z][A-Z0-9_]*[A-Za-z0-9/_.-]*")


def _command(arguments: list[str]) -> str:
    return " ".join(
        f'"{argument}"' if _PLACEHOLDER.fullmatch(argument) else shlex.quote(argument)
        for argument in arguments
    )


class Command(BaseCommand):
    help = "Print least-privilege az CLI commands for the portal's own identity."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--principal-id", default="$PORTAL_PRINCIPAL_ID")

    def handle(self, *args: Any, **options: Any) -> None:
        principal = options["principal_id"]
        guids = sorted(
            CatalogRole.objects.filter(privileged=False, can_assign_roles=False).values_list(
                "role_definition_guid", flat=True
            )
        )
        base = ["az", "role", "assignment", "create", "--assignee-object-id", principal]
        base += ["--assignee-principal-type", "ServicePrincipal"]
        lines = ["# Least-privilege role assignments for the Workload Identity Portal"]
        clusters = list(Cluster.objects.filter(emulated=False))
        emulated = sorted(Cluster.objects.filter(emulated=True).values_list("name", flat=True))
        if emulated:
            lines.append(
                f"# skipped: {', '.join(emulated)} (emulated, not in Azure); register the real "
                "AKS clusters to get their Managed Identity Contributor and AKS Cluster User lines"
            )
        for rg_scope in sorted(
            {
                f"/subscriptions/{c.subscription_id}/resourceGroups/{c.resource_group}"
                for c in clusters
            }
        ):
            lines.append(f"# create/delete identities and their FICs in {rg_scope}")
            lines.append(
                _command([*base, "--role", MANAGED_IDENTITY_CONTRIBUTOR, "--scope", rg_scope])
            )
        for cluster in clusters:
            scope = (
                f"/subscriptions/{cluster.subscription_id}/resourceGroups/"
                f"{cluster.aks_resource_group}/providers/Microsoft.ContainerService/"
                f"managedClusters/{cluster.name}"
            )
            lines.append(f"# read {cluster.name} and its user kubeconfig (verification)")
            lines.append(_command([*base, "--role", AKS_CLUSTER_USER, "--scope", scope]))
        subscriptions = sorted(
            {s.lower() for c in clusters for s in c.allowed_scope_subscriptions}
        ) or ["$SUBSCRIPTION_ID"]
        for subscription in subscriptions:
            # Resource Graph answers only for what the caller can read (scope existence, the
            # ownership tag, the request form's picker: provisioning/resource_graph.py).
            lines.append(f"# see which resources exist in {subscription} (Azure Resource Graph)")
            lines.append(
                _command([*base, "--role", READER, "--scope", f"/subscriptions/{subscription}"])
            )
            lines.append(
                f"# assign only the catalog's {len(guids)} non-privileged roles in {subscription}"
            )
            lines.append(
                _command(
                    [
                        *base,
                        "--role",
                        RBAC_ADMINISTRATOR,
                        "--scope",
                        f"/subscriptions/{subscription}",
                        "--condition",
                        assignable_condition(guids),
                        "--condition-version",
                        "2.0",
                    ]
                )
            )
        self.stdout.write("\n".join(lines))
