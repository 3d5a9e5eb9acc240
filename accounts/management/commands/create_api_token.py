"""Mint an API token for a user and print it once (only its hash is stored)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.tokens import SCOPES, api_token_create, parse_duration
from identities.errors import PolicyViolationError


class Command(BaseCommand):
    help = (
        "Create an API token for USERNAME and print it once. Example: "
        "create_api_token alice --scopes read,request --expires-in 30d --name deploy-pipeline"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--scopes",
            default="read",
            help=f"Comma-separated, from {', '.join(SCOPES)} (default: read).",
        )
        parser.add_argument(
            "--expires-in",
            default="90d",
            help="Lifetime such as 30d, 12h, 2w, or 'never' (default: 90d).",
        )
        parser.add_argument("--name", default="", help="What uses the token (default: cli).")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        try:
            lifetime = parse_duration(options["expires_in"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        scopes = [s for s in options["scopes"].split(",") if s.strip()]
        try:
            token, raw = api_token_create(
                user=user,
                name=options["name"] or "cli",
                scopes=scopes,
                expires_at=timezone.now() + lifetime if lifetime else None,
            )
        except PolicyViolationError as exc:
            raise CommandError(exc.message) from exc
        expiry = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never"
        # The token goes alone on stdout (for `TOKEN=$(… create_api_token …)`), notes on stderr.
        self.stdout.write(raw)
        self.stderr.write(
            f"Token {token.prefix}… for {user.get_username()} (scopes {','.join(token.scopes)}, "
            f"{expiry}). It is shown once; store it in your pipeline's secret store."
        )
