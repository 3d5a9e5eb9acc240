"""Factories and the named cast of the domain tests (and of the API and UI tests).

- `requester`: on team `payments` (owns namespaces payments, payments-jobs on `cluster`)
- `outsider`: a requester on team `search` (owns namespace search)
- `approver`, `second_approver`: the security team
- `auditor`: read-only everywhere; `admin_user`: platform admin (superuser)

Every fixture here needs the database; the role groups and the role catalog are ensured first,
because a transactional test elsewhere may have flushed what the migrations put there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import factory
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType

from identities import roles
from identities.catalog import catalog_ensure
from identities.models import (
    CatalogRole,
    Cluster,
    FederatedCredential,
    Identity,
    NamespaceOwnership,
    ResourceGroupOwnership,
    Team,
    TeamMembership,
)
from identities.naming import AUDIENCE, fic_subject
from identities.policy import RequestDraft, RoleDraft

SUBSCRIPTION = "6c3f1b2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c"
OTHER_SUBSCRIPTION = "0f0e0d0c-0b0a-4909-8807-060504030201"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
VAULT_SCOPE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments"
)
STORAGE_SCOPE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.Storage/storageAccounts/stpayments"
)
RESOURCE_GROUP_SCOPE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
# Team search's own vault (rg-search is search's; rg-payments is payments').
SEARCH_VAULT_SCOPE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-search"
    "/providers/Microsoft.KeyVault/vaults/kv-search"
)
PASSWORD = "test-password"


@functools.cache
def _password_hash() -> str:
    return make_password(PASSWORD)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.test")
    # Hashed once per session: the real PBKDF2 cost per user would dominate the suite's runtime.
    password = factory.LazyFunction(lambda: _password_hash())

    @factory.post_generation
    def in_groups(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        """`UserFactory(in_groups=["approvers"])` puts the user in those role groups."""
        if create and extracted:
            for name in extracted:
                self.groups.add(Group.objects.get(name=name))
        if create:
            self.save()


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"team{n}")


class ClusterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cluster
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"aks-test-{n}")
    subscription_id = SUBSCRIPTION
    resource_group = "rg-identities"
    location = "westeurope"
    oidc_issuer_url = factory.Sequence(
        lambda n: f"https://westeurope.oic.prod-aks.azure.com/{TENANT}/cluster-{n}/"
    )
    workload_identity_enabled = True
    allowed_scope_subscriptions = factory.LazyFunction(lambda: [SUBSCRIPTION])


class NamespaceOwnershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NamespaceOwnership

    cluster = factory.SubFactory(ClusterFactory)
    team = factory.SubFactory(TeamFactory)
    namespace = factory.Sequence(lambda n: f"ns-{n}")


class IdentityFactory(factory.django.DjangoModelFactory):
    """A ready identity as provisioning leaves it (no request history)."""

    class Meta:
        model = Identity

    name = factory.Sequence(lambda n: f"id-app-{n}")
    team = factory.SubFactory(TeamFactory)
    cluster = factory.SubFactory(ClusterFactory)
    app_name = factory.Sequence(lambda n: f"app-{n}")
    subscription_id = factory.SelfAttribute("cluster.subscription_id")
    resource_group = factory.SelfAttribute("cluster.resource_group")
    location = factory.SelfAttribute("cluster.location")
    status = Identity.Status.READY
    client_id = "8f2c7a51-0e0b-4f6e-9b7d-2d3c4b5a6f70"
    principal_id = "ce2ce14e-85d7-4629-bdbc-454d0519d987"
    tenant_id = TENANT


class FederatedCredentialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FederatedCredential

    identity = factory.SubFactory(IdentityFactory)
    namespace = "payments"
    service_account = factory.Sequence(lambda n: f"sa-{n}")
    name = factory.LazyAttribute(lambda fic: f"fic-{fic.namespace}-{fic.service_account}")
    issuer = factory.SelfAttribute("identity.cluster.oidc_issuer_url")
    subject = factory.LazyAttribute(lambda fic: fic_subject(fic.namespace, fic.service_account))
    audience = AUDIENCE
    status = FederatedCredential.Status.ACTIVE


@pytest.fixture
def role_groups(db: None) -> None:
    roles.groups_ensure(Group, Permission, ContentType)


@pytest.fixture
def catalog(db: None) -> dict[str, CatalogRole]:
    """The seeded role catalog, by name."""
    catalog_ensure(CatalogRole)
    return {role.name: role for role in CatalogRole.objects.all()}


@pytest.fixture
def team(db: None) -> Team:
    return TeamFactory(name="payments")


@pytest.fixture
def other_team(db: None) -> Team:
    return TeamFactory(name="search")


@pytest.fixture
def cluster(team: Team, other_team: Team) -> Cluster:
    """`aks-test`: payments owns payments and payments-jobs, search owns search."""
    cluster = ClusterFactory(name="aks-test")
    for namespace, owner in (("payments", team), ("payments-jobs", team), ("search", other_team)):
        NamespaceOwnership.objects.get_or_create(
            cluster=cluster, namespace=namespace, defaults={"team": owner}
        )
    # payments owns rg-payments (the vault and storage account the tests grant on), search owns
    # rg-search: a scope in the other's group is a cross-team request.
    for group, owner in (("rg-payments", team), ("rg-search", other_team)):
        ResourceGroupOwnership.objects.get_or_create(
            subscription_id=SUBSCRIPTION, resource_group=group, defaults={"team": owner}
        )
    return cluster


def _member(user: Any, team: Team) -> Any:
    TeamMembership.objects.get_or_create(team=team, user=user)
    return user


@pytest.fixture
def requester(role_groups: None, team: Team) -> Any:
    return _member(UserFactory(username="alice", in_groups=[roles.REQUESTERS]), team)


@pytest.fixture
def teammate(role_groups: None, team: Team) -> Any:
    """Another requester on the requester's team."""
    return _member(UserFactory(username="carol", in_groups=[roles.REQUESTERS]), team)


@pytest.fixture
def outsider(role_groups: None, other_team: Team) -> Any:
    return _member(UserFactory(username="bob", in_groups=[roles.REQUESTERS]), other_team)


@pytest.fixture
def approver(role_groups: None) -> Any:
    return UserFactory(username="sam", in_groups=[roles.APPROVERS])


@pytest.fixture
def second_approver(role_groups: None) -> Any:
    return UserFactory(username="sara", in_groups=[roles.APPROVERS])


@pytest.fixture
def auditor(role_groups: None) -> Any:
    return UserFactory(username="ada", in_groups=[roles.AUDITORS])


@pytest.fixture
def admin_user(role_groups: None) -> Any:
    return UserFactory(username="admin", in_groups=[roles.ADMINS], is_staff=True, is_superuser=True)


DraftFactory = Callable[..., RequestDraft]


@pytest.fixture
def make_draft(cluster: Cluster, catalog: dict[str, CatalogRole]) -> DraftFactory:
    """A valid new-identity draft for the payments team; keyword arguments override fields."""

    def build(**overrides: Any) -> RequestDraft:
        values: dict[str, Any] = {
            "kind": "new",
            "team": "payments",
            "cluster": cluster.name,
            "namespace": "payments",
            "service_account": "checkout",
            "app_name": "checkout",
            "roles": (RoleDraft("Key Vault Secrets User", VAULT_SCOPE),),
            "tags": {"costCentre": "cc-4711", "environment": "dev"},
            "justification": "Checkout reads its payment provider secrets from Key Vault.",
        }
        values.update(overrides)
        return RequestDraft(**values)

    return build
