"""Configuration writes: teams, members, roles, clusters, namespace ownership, the catalog."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction

from identities import roles
from identities.errors import DomainError
from identities.models import CatalogRole, Cluster, NamespaceOwnership, Team
from identities.services import (
    config_object_delete,
    config_object_save,
    namespace_grant,
    team_member_add,
    user_role_grant,
)
from tests.identities.conftest import audit_actions, last_audit
from tests.support.people import SUBSCRIPTION, UserFactory

pytestmark = pytest.mark.django_db


def test_granting_a_namespace_is_audited(admin_user: Any, cluster: Cluster, team: Team) -> None:
    ownership = namespace_grant(
        actor=admin_user, cluster=cluster, namespace="payments-api", team=team
    )

    assert ownership.team == team
    event = last_audit()
    assert (event.action, event.actor) == ("namespaceownership.created", admin_user)
    assert event.data["after"]["namespace"] == "payments-api"


@pytest.mark.parametrize(
    "namespace",
    ["kube-system", "kube-public", "kube-node-lease", "gatekeeper-system", "aks-command"],
)
def test_platform_namespaces_can_never_be_granted(
    admin_user: Any, cluster: Cluster, team: Team, namespace: str
) -> None:
    with pytest.raises(DomainError, match="reserved"):
        namespace_grant(actor=admin_user, cluster=cluster, namespace=namespace, team=team)
    assert not NamespaceOwnership.objects.filter(namespace=namespace).exists()


def test_the_database_refuses_reserved_namespaces_too(cluster: Cluster, team: Team) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        NamespaceOwnership.objects.create(cluster=cluster, namespace="kube-system", team=team)


def test_a_namespace_owned_by_another_team_is_not_taken_over(
    admin_user: Any, cluster: Cluster, other_team: Team
) -> None:
    with pytest.raises(DomainError, match="belongs to team payments"):
        namespace_grant(actor=admin_user, cluster=cluster, namespace="payments", team=other_team)


def test_updating_a_cluster_records_before_and_after(admin_user: Any, cluster: Cluster) -> None:
    cluster.workload_identity_enabled = False
    config_object_save(actor=admin_user, instance=cluster)

    event = last_audit()
    assert event.action == "cluster.updated"
    assert event.data["before"]["workload_identity_enabled"] is True
    assert event.data["after"]["workload_identity_enabled"] is False


def test_saving_without_changes_writes_no_audit_row(admin_user: Any, cluster: Cluster) -> None:
    config_object_save(actor=admin_user, instance=cluster)
    rows = audit_actions()
    config_object_save(actor=admin_user, instance=cluster)
    assert audit_actions() == rows


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("oidc_issuer_url", "http://issuer.example/", "https://"),
        ("oidc_issuer_url", "https://issuer.example/ ", "whitespace"),
        ("subscription_id", "not-a-guid", "GUID"),
        ("allowed_scope_subscriptions", ["nope"], "subscription ids"),
        ("name", "-bad", "AKS cluster name"),
    ],
)
def test_invalid_cluster_settings_are_refused(
    admin_user: Any, field: str, value: object, message: str
) -> None:
    cluster = Cluster(
        name="aks-new",
        subscription_id=SUBSCRIPTION,
        resource_group="rg",
        location="westeurope",
        oidc_issuer_url="https://issuer.example/tenant/x/",
    )
    setattr(cluster, field, value)
    with pytest.raises(DomainError, match=message):
        config_object_save(actor=admin_user, instance=cluster)
    assert not Cluster.objects.filter(name="aks-new").exists()


def test_the_issuer_url_is_stored_exactly_as_given(admin_user: Any) -> None:
    issuer = "https://westeurope.oic.prod-aks.azure.com/72f988bf/1c2d3e4f/"
    cluster = config_object_save(
        actor=admin_user,
        instance=Cluster(
            name="aks-exact",
            subscription_id=SUBSCRIPTION,
            resource_group="rg",
            location="westeurope",
            oidc_issuer_url=issuer,
        ),
    )
    cluster.refresh_from_db()
    assert cluster.oidc_issuer_url == issuer


def test_deleting_something_still_in_use_is_refused(
    admin_user: Any, team: Team, cluster: Cluster
) -> None:
    with pytest.raises(DomainError, match="still in use"):
        config_object_delete(actor=admin_user, instance=team)
    assert Team.objects.filter(pk=team.pk).exists()


def test_deleting_a_namespace_grant_is_audited(admin_user: Any, cluster: Cluster) -> None:
    ownership = NamespaceOwnership.objects.get(cluster=cluster, namespace="payments-jobs")
    config_object_delete(actor=admin_user, instance=ownership)
    event = last_audit()
    assert event.action == "namespaceownership.deleted"
    assert event.data["before"]["namespace"] == "payments-jobs"


def test_membership_and_roles_are_granted_once_and_audited(admin_user: Any, team: Team) -> None:
    user = UserFactory(username="dora")
    team_member_add(actor=admin_user, team=team, user=user)
    team_member_add(actor=admin_user, team=team, user=user)
    user_role_grant(actor=admin_user, user=user, role=roles.APPROVERS)
    user_role_grant(actor=admin_user, user=user, role=roles.APPROVERS)

    assert audit_actions() == ["teammembership.created", "user.role_granted"]
    assert roles.is_approver(user)
    with pytest.raises(DomainError, match="Unknown role"):
        user_role_grant(actor=admin_user, user=user, role="wizards")


def test_the_catalog_is_seeded_with_privileged_roles_flagged(
    catalog: dict[str, CatalogRole],
) -> None:
    assert len(catalog) == 31
    assert catalog["Reader"].role_definition_guid == "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    privileged = {name for name, role in catalog.items() if role.privileged}
    assert {
        "Owner",
        "Contributor",
        "User Access Administrator",
        "Role Based Access Control Administrator",
    } <= privileged
    assert catalog["Key Vault Secrets User"].resource_types == ["Microsoft.KeyVault/vaults"]
    assert (
        catalog["AcrPull"].role_definition_id(SUBSCRIPTION)
        == f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/"
        "7f951dda-4ed3-4680-a7ca-43fe172d538d"
    )


def test_role_helpers_follow_group_membership(
    requester: Any, approver: Any, auditor: Any, admin_user: Any
) -> None:
    assert roles.is_requester(requester) and not roles.is_approver(requester)
    assert roles.is_approver(approver) and roles.sees_everything(approver)
    assert roles.is_auditor(auditor) and not roles.is_admin(auditor)
    assert roles.is_admin(admin_user)
    assert not roles.sees_everything(requester)
