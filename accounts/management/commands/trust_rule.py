"""List, register and disable a team's OIDC trust rules from the command line (audited as the
person named by --by, who must be a requester of the team or an admin)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.machines import trust_rule_create, trust_rule_disable
from accounts.models import TrustRule
from accounts.tokens import SERVICE_SCOPES
from identities.errors import DomainError
from identities.models import Team


class Command(BaseCommand):
    help = (
        "Manage OIDC trust rules. Examples: trust_rule list --team payments; trust_rule add "
        "--by alice --team payments --principal deploy-pipeline --name 'main branch' "
        "--issuer https://token.actions.githubusercontent.com --audience "
        "api://workload-identity-portal --subject-pattern 'repo:contoso/payments:*' "
        "--claim ref=refs/heads/main --scopes read,request; trust_rule disable 7 --by alice"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True)
        listing = commands.add_parser("list", help="List rules (all, or one team's).")
        listing.add_argument("--team", default="")
        add = commands.add_parser("add", help="Register a rule.")
        add.add_argument("--by", required=True, help="Who registers it (the audit trail's actor).")
        add.add_argument("--team", required=True)
        add.add_argument("--principal", required=True, help="The service principal's name.")
        add.add_argument("--name", required=True)
        add.add_argument("--issuer", required=True)
        add.add_argument("--audience", required=True)
        add.add_argument("--subject", default="")
        add.add_argument("--subject-pattern", default="")
        add.add_argument(
            "--claim", action="append", default=[], help="name=value; repeat for more claims."
        )
        add.add_argument(
            "--scopes", default="read", help=f"Comma-separated, from {', '.join(SERVICE_SCOPES)}."
        )
        disable = commands.add_parser("disable", help="Disable a rule for good.")
        disable.add_argument("rule_id", type=int)
        disable.add_argument("--by", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["command"]
        if command == "list":
            self._list(options["team"])
            return
        actor = get_user_model().objects.filter(username=options["by"]).first()
        if actor is None:
            raise CommandError(f"No user named {options['by']!r}.")
        try:
            if command == "add":
                self._add(actor, options)
            else:
                rule = TrustRule.objects.filter(pk=options["rule_id"]).first()
                if rule is None:
                    raise CommandError(f"No trust rule {options['rule_id']}.")
                rule = trust_rule_disable(rule=rule, actor=actor)
                self.stdout.write(f"Trust rule {rule.pk} ({rule.name}) is disabled.")
        except DomainError as exc:
            raise CommandError(exc.message) from exc

    def _add(self, actor: Any, options: dict[str, Any]) -> None:
        team = Team.objects.filter(name=options["team"]).first()
        if team is None:
            raise CommandError(f"No team named {options['team']!r}.")
        claims = {}
        for claim in options["claim"]:
            name, separator, value = claim.partition("=")
            if not separator:
                raise CommandError(f"--claim {claim!r}: write name=value.")
            claims[name] = value
        rule = trust_rule_create(
            actor=actor,
            team=team,
            service_principal=options["principal"],
            name=options["name"],
            issuer=options["issuer"],
            audience=options["audience"],
            subject=options["subject"],
            subject_pattern=options["subject_pattern"],
            claims=claims,
            scopes=[scope for scope in options["scopes"].split(",") if scope.strip()],
        )
        self.stdout.write(
            f"Trust rule {rule.pk} registered: tokens matching it act as "
            f"{rule.service_principal.label} with {', '.join(rule.scopes)}."
        )

    def _list(self, team_name: str) -> None:
        rules = TrustRule.objects.select_related("service_principal__team").order_by("id")
        if team_name:
            rules = rules.filter(service_principal__team__name=team_name)
        for rule in rules:
            match = rule.subject and f"sub={rule.subject}"
            match = match or (rule.subject_pattern and f"sub~{rule.subject_pattern}") or ""
            claims = " ".join(f"{name}={value}" for name, value in rule.claims.items())
            state = "disabled" if rule.disabled_at else "enabled"
            self.stdout.write(
                f"{rule.pk}\t{state}\t{rule.service_principal.label}\t{rule.issuer}\t"
                f"aud={rule.audience}\t{match} {claims}".rstrip()
                + f"\t{','.join(rule.scopes)}\t{rule.name}"
            )
