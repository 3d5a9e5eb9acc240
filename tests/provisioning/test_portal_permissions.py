"""The least-privilege commands for the portal's own identity follow the catalog."""

from __future__ import annotations

import shlex
from io import StringIO

import pytest
from django.core.management import call_command

from identities.models import CatalogRole, Cluster

pytestmark = pytest.mark.django_db


def test_the_rbac_condition_allows_exactly_the_non_privileged_catalog_roles(
    catalog: dict[str, CatalogRole], cluster: Cluster
) -> None:
    out = StringIO()
    call_command("portal_permissions", "--principal-id", "1111", stdout=out)
    commands = [shlex.split(line) for line in out.getvalue().splitlines() if line.startswith("az")]
    [rbac] = [c for c in commands if "f58310d9-a9f6-439a-9e8d-f62e7b41a168" in c]
    condition = rbac[rbac.index("--condition") + 1]
    assert catalog["Key Vault Secrets User"].role_definition_guid in condition
    for role in catalog.values():
        if role.privileged or role.can_assign_roles:
            assert role.role_definition_guid not in condition, role.name
    assert rbac[rbac.index("--condition-version") + 1] == "2.0"
    scopes = {c[c.index("--scope") + 1] for c in commands}
    assert (
        f"/subscriptions/{cluster.subscription_id}/resourceGroups/{cluster.resource_group}"
        in scopes
    )
    assert all(c[c.index("--assignee-object-id") + 1] == "1111" for c in commands)


def test_the_portal_may_read_the_allowed_subscriptions_for_resource_graph(
    catalog: dict[str, CatalogRole], cluster: Cluster
) -> None:
    out = StringIO()
    call_command("portal_permissions", "--principal-id", "1111", stdout=out)
    commands = [shlex.split(line) for line in out.getvalue().splitlines() if line.startswith("az")]
    readers = {
        c[c.index("--scope") + 1]
        for c in commands
        if c[c.index("--role") + 1] == "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    }
    assert readers == {f"/subscriptions/{s.lower()}" for s in cluster.allowed_scope_subscriptions}


def test_placeholders_stay_for_the_shell_to_fill_in(
    catalog: dict[str, CatalogRole], cluster: Cluster
) -> None:
    """Without --principal-id (and with no allowed subscription) the commands name
    $PORTAL_PRINCIPAL_ID and $SUBSCRIPTION_ID in double quotes: pasted into a shell they expand
    (single quotes handed az the literal text)."""
    Cluster.objects.filter(pk=cluster.pk).update(allowed_scope_subscriptions=[])
    out = StringIO()
    call_command("portal_permissions", stdout=out)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("az")]
    assert lines and all('--assignee-object-id "$PORTAL_PRINCIPAL_ID"' in line for line in lines)
    assert any('--scope "/subscriptions/$SUBSCRIPTION_ID"' in line for line in lines)
    assert "'$" not in out.getvalue()
