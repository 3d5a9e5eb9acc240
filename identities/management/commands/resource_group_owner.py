"""Record which team owns which resource group (audited, like the admin's changes).

manage.py resource_group_owner set --team payments --subscription <id> --resource-group rg-x
manage.py resource_group_owner remove --subscription <id> --resource-group rg-x
manage.py resource_group_owner list [--team payments]
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db.models.functions import Lower

from identities.errors import DomainError
from identities.models import ResourceGroupOwnership, Team
from identities.services import config_object_delete, config_object_save


class Command(BaseCommand):
    help = "Set, remove or list the team that owns a resource group (audited)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["set", "remove", "list"])
        parser.add_argument("--team", help="team name (set; a filter for list)")
        parser.add_argument("--subscription", help="subscription id (GUID)")
        parser.add_argument("--resource-group", dest="resource_group", help="resource group name")
        parser.add_argument(
            "--actor", help="username the audit row names (default: the system)", default=""
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            self._list(options["team"])
            return
        if not options["subscription"] or not options["resource_group"]:
            raise CommandError(f"{action} needs --subscription and --resource-group.")
        actor = None
        if options["actor"]:
            actor = get_user_model().objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"No user {options['actor']!r}.")
        existing = (
            ResourceGroupOwnership.objects.annotate(
                subscription_lower=Lower("subscription_id"), group_lower=Lower("resource_group")
            )
            .filter(
                subscription_lower=options["subscription"].lower(),
                group_lower=options["resource_group"].lower(),
            )
            .first()
        )
        try:
            if action == "remove":
                if existing is None:
                    raise CommandError("No team owns that resource group.")
                config_object_delete(actor=actor, instance=existing)
                self.stdout.write(f"Removed: {existing}")
                return
            team = Team.objects.filter(name=options["team"] or "").first()
            if team is None:
                raise CommandError(f"No team {options['team']!r} (set needs --team).")
            ownership = existing or ResourceGroupOwnership(
                subscription_id=options["subscription"].lower(),
                resource_group=options["resource_group"],
            )
            ownership.team = team
            config_object_save(actor=actor, instance=ownership)
            self.stdout.write(f"Owner recorded: {ownership}")
        except DomainError as error:
            raise CommandError(error.message) from error

    def _list(self, team: str | None) -> None:
        rows = ResourceGroupOwnership.objects.select_related("team")
        if team:
            rows = rows.filter(team__name=team)
        for ownership in rows:
            self.stdout.write(
                f"{ownership.team.name}\t{ownership.subscription_id}\t{ownership.resource_group}"
            )
