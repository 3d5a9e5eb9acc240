"""Demo data: two teams, the emulated sandbox cluster, the catalog and six demo users.

Idempotent: a second run changes nothing (it resets the demo users' passwords to `demo`). It never
overwrites an existing cluster's OIDC issuer URL unless --oidc-issuer-url is given, because the
emulator assigns the real one when the cluster is registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand, CommandError

from identities import roles
from identities.catalog import catalog_ensure
from identities.errors import DomainError
from identities.models import CatalogRole, Cluster, ResourceGroupOwnership, Team
from identities.services import (
    config_object_save,
    namespace_grant,
    team_member_add,
    user_role_grant,
)
from provisioning.clusters import (
    cluster_register,
    sandbox_cluster_create,
    sandbox_resources_register,
)
from provisioning.errors import GatewayError

DEMO_PASSWORD = "demo"  # noqa: S105 - demo-only accounts, announced as such on every run
SANDBOX = "aks-sandbox"
SANDBOX_SUBSCRIPTION = "00000000-0000-4000-8000-000000000001"
SANDBOX_RESOURCE_GROUP = "rg-workload-identities"
SANDBOX_LOCATION = "westeurope"

TEAMS = {
    "payments": "Checkout and billing services.",
    "search": "Search indexing and query services.",
}
NAMESPACES = {"payments": "payments", "payments-jobs": "payments", "search": "search"}
# Per team, in the sandbox subscription: what its workloads reach, registered in the emulator's
# inventory so role assignments on them behave as on Azure (a scope that does not exist is 404)
# and the new-request form's picker lists them. Names follow Azure's rules (storage accounts:
# 3-24 lower-case letters and digits; vaults 3-24, namespaces 6-50, Cosmos accounts 3-44
# letters, digits and hyphens) and the naming convention of the Cloud Adoption Framework
# (st, kv, sbns, cosmos prefixes).
DEMO_RESOURCES: dict[str, tuple[tuple[str, str, str], ...]] = {
    # team: ((type, name, what it is for), ...)
    "payments": (
        ("Microsoft.Storage/storageAccounts", "stpaymentsinvoices", "invoice PDFs"),
        ("Microsoft.Storage/storageAccounts", "stpaymentsexports", "nightly ledger exports"),
        ("Microsoft.KeyVault/vaults", "kv-payments-checkout", "payment provider secrets"),
        ("Microsoft.KeyVault/vaults", "kv-payments-ledger", "ledger signing keys"),
        ("Microsoft.ServiceBus/namespaces", "sbns-payments-orders", "order events"),
        ("Microsoft.DocumentDB/databaseAccounts", "cosmos-payments-ledger", "the ledger"),
    ),
    "search": (
        ("Microsoft.Storage/storageAccounts", "stsearchcrawl", "crawled documents"),
        ("Microsoft.Storage/storageAccounts", "stsearchsnapshots", "index snapshots"),
        ("Microsoft.KeyVault/vaults", "kv-search-api", "query API keys"),
        ("Microsoft.ServiceBus/namespaces", "sbns-search-feeds", "catalog change feeds"),
        ("Microsoft.DocumentDB/databaseAccounts", "cosmos-search-catalog", "the catalog"),
    ),
}


def demo_resources() -> list[dict[str, Any]]:
    """Each demo team's resource group with its storage accounts, key vaults, Service Bus
    namespace and Cosmos DB account, tagged with the team, its cost centre and what the resource
    is for (the shape of a Resource Graph row); and in rg-shared, which no team owns, a storage
    account per team tagged owner-team=<team> (the default OWNERSHIP_TAG): the team's by its
    tag."""
    shared = f"/subscriptions/{SANDBOX_SUBSCRIPTION}/resourceGroups/rg-shared"
    resources: list[dict[str, Any]] = [
        {
            "id": f"{shared}/providers/Microsoft.Storage/storageAccounts/stshared{team}",
            "location": SANDBOX_LOCATION,
            "tags": {"owner-team": team, "environment": "demo"},
        }
        for team in TEAMS
    ]
    for team, owned in DEMO_RESOURCES.items():
        group = f"/subscriptions/{SANDBOX_SUBSCRIPTION}/resourceGroups/rg-{team}"
        tags = {"team": team, "environment": "demo", "costCentre": f"cc-{team}"}
        resources.append({"id": group, "location": SANDBOX_LOCATION, "tags": tags})
        resources += [
            {
                "id": f"{group}/providers/{kind}/{name}",
                "location": SANDBOX_LOCATION,
                "tags": {**tags, "purpose": purpose},
            }
            for kind, name, purpose in owned
        ]
    return resources


# username: (roles, team or None, is_staff, is_superuser, what they are for)
USERS: dict[str, tuple[tuple[str, ...], str | None, bool, bool, str]] = {
    "alice": ((roles.REQUESTERS,), "payments", False, False, "requester, team payments"),
    "bob": ((roles.REQUESTERS,), "search", False, False, "requester, team search"),
    "sam": ((roles.APPROVERS,), None, False, False, "approver (security team)"),
    "sara": ((roles.APPROVERS,), None, False, False, "approver (security team)"),
    "ada": ((roles.AUDITORS,), None, True, False, "auditor, read-only everywhere"),
    "admin": ((roles.ADMINS,), None, True, True, "platform admin (Django admin)"),
}


def _emulator_url() -> str:
    url = getattr(settings, "EMULATOR_URL", "") or ""
    url_file = Path(getattr(settings, "EMULATOR_STATE_DIR", "")) / "url"
    if not url and url_file.is_file():
        url = url_file.read_text().strip()
    return url.rstrip("/") or "https://127.0.0.1:8443"


class Command(BaseCommand):
    help = "Create demo teams, the emulated aks-sandbox cluster, the catalog and demo users."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--oidc-issuer-url",
            help="The sandbox cluster's OIDC issuer URL, exactly as the emulator reports it.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off (creates users with a well-known password).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "seed_demo creates accounts with the password 'demo'. Refusing with DEBUG off; "
                "pass --force for a throwaway demo environment."
            )
        roles.groups_ensure(Group, Permission, ContentType)
        catalog_count = catalog_ensure(CatalogRole)
        teams = {name: self.team(name, description) for name, description in TEAMS.items()}
        cluster = self.cluster(options["oidc_issuer_url"])
        for namespace, team in NAMESPACES.items():
            namespace_grant(actor=None, cluster=cluster, namespace=namespace, team=teams[team])
        # Each team owns its resource group (demo_resources): another team's vault there is a
        # cross-team request.
        for name, team_object in teams.items():
            if not ResourceGroupOwnership.objects.filter(
                subscription_id=SANDBOX_SUBSCRIPTION, resource_group=f"rg-{name}"
            ).exists():
                config_object_save(
                    actor=None,
                    instance=ResourceGroupOwnership(
                        team=team_object,
                        subscription_id=SANDBOX_SUBSCRIPTION,
                        resource_group=f"rg-{name}",
                    ),
                )
        for username, (user_roles, team_name, staff, superuser, _) in USERS.items():
            user = self.user(username, staff=staff, superuser=superuser)
            for role in user_roles:
                user_role_grant(actor=None, user=user, role=role)
            if team_name:
                team_member_add(actor=None, team=teams[team_name], user=user)
        self.report(cluster, catalog_count)

    def team(self, name: str, description: str) -> Team:
        team = Team.objects.filter(name=name).first() or Team(name=name, description=description)
        config_object_save(actor=None, instance=team)
        return team

    def cluster(self, issuer_url: str | None) -> Cluster:
        cluster = Cluster.objects.filter(name=SANDBOX).first()
        if cluster is None:
            cluster = Cluster(
                name=SANDBOX,
                subscription_id=SANDBOX_SUBSCRIPTION,
                resource_group=SANDBOX_RESOURCE_GROUP,
                location=SANDBOX_LOCATION,
                # A placeholder until the cluster is registered with the emulator, which assigns
                # <emulator>/oidc/<uuid>/; pass --oidc-issuer-url or update it in the admin.
                oidc_issuer_url=f"{_emulator_url()}/oidc/{SANDBOX}/",
                workload_identity_enabled=True,
                allowed_scope_subscriptions=[SANDBOX_SUBSCRIPTION],
                apply_service_account=True,
                emulated=True,
            )
        if issuer_url:
            cluster.oidc_issuer_url = issuer_url
        config_object_save(actor=None, instance=cluster)
        if settings.AZURE_MODE == "emulator" and not issuer_url:
            cluster = self.register_with_emulator(cluster)
        return cluster

    def register_with_emulator(self, cluster: Cluster) -> Cluster:
        """Create the sandbox cluster in the emulator and read its real issuer back from AKS."""

        try:
            sandbox_resources_register(demo_resources())
            sandbox_cluster_create(
                name=cluster.name,
                subscription_id=cluster.subscription_id,
                resource_group=cluster.aks_resource_group,
                location=cluster.location,
            )
            registration = cluster_register(
                actor=None,
                name=cluster.name,
                subscription_id=cluster.subscription_id,
                resource_group=cluster.resource_group,
                cluster_resource_group=cluster.cluster_resource_group,
                location=cluster.location,
                allowed_scope_subscriptions=cluster.allowed_scope_subscriptions,
                apply_service_account=True,
                emulated=True,
            )
        except (GatewayError, OSError, DomainError) as error:
            self.stderr.write(
                self.style.WARNING(
                    f"the Azure emulator is not reachable ({error}); start it (python3 dev.py "
                    "run does) and run seed_demo again to register the sandbox cluster."
                )
            )
            return cluster
        for warning in registration.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        return registration.cluster

    def user(self, username: str, *, staff: bool, superuser: bool) -> Any:
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user = user_model(username=username, email=f"{username}@example.invalid")
        user.is_active = True
        user.is_staff = staff
        user.is_superuser = superuser
        if not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
        user.save()
        return user

    def report(self, cluster: Cluster, catalog_count: int) -> None:
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
        self.stdout.write(f"  teams: {', '.join(TEAMS)}")
        self.stdout.write(
            f"  cluster: {cluster.name} (emulated) subscription {cluster.subscription_id}, "
            f"resource group {cluster.resource_group}, issuer {cluster.oidc_issuer_url}"
        )
        for namespace, team in NAMESPACES.items():
            self.stdout.write(f"  namespace {cluster.name}/{namespace} → {team}")
        self.stdout.write(f"  role catalog: {catalog_count} roles")
        self.stdout.write(f"  users (password '{DEMO_PASSWORD}'):")
        for username, (_, _, _, _, what) in USERS.items():
            self.stdout.write(f"    {username:<6} {what}")
        self.stderr.write(
            self.style.WARNING(
                "WARNING: these accounts are for demos only. Their password is 'demo' and "
                "'admin' is a superuser; never run seed_demo on a real deployment."
            )
        )
