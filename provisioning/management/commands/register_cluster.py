"""Register (or refresh) an AKS cluster from what Azure reports about it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from provisioning.clusters import ClusterRefusedError, cluster_register


class Command(BaseCommand):
    help = (
        "Register an AKS cluster: reads its OIDC issuer URL and workload-identity flag from AKS "
        "and refuses clusters without them."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="AKS cluster name")
        parser.add_argument("--subscription", required=True, help="subscription id")
        parser.add_argument(
            "--resource-group", required=True, help="resource group for the identities"
        )
        parser.add_argument(
            "--cluster-resource-group", default="", help="the AKS cluster's own resource group"
        )
        parser.add_argument("--location", default="", help="identities' location (default: AKS)")
        parser.add_argument(
            "--allowed-subscription",
            action="append",
            dest="allowed",
            help="subscription role assignments may target (repeatable; default: --subscription)",
        )
        parser.add_argument("--apply-service-account", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            registration = cluster_register(
                actor=None,
                name=options["name"],
                subscription_id=options["subscription"],
                resource_group=options["resource_group"],
                cluster_resource_group=options["cluster_resource_group"],
                location=options["location"],
                allowed_scope_subscriptions=options["allowed"],
                apply_service_account=options["apply_service_account"],
            )
        except ClusterRefusedError as error:
            raise CommandError(str(error)) from error
        cluster = registration.cluster
        self.stdout.write(
            self.style.SUCCESS(f"Registered {cluster.name}: issuer {cluster.oidc_issuer_url}")
        )
        for warning in registration.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
