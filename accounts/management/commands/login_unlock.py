"""Lift a sign-in lockout before it ends (the throttle of accounts.login_throttle)."""

from __future__ import annotations

import getpass
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.login_throttle import login_unlock

# Caches that live inside one process: the command would clear its own empty copy and report
# success while the web server's lockout stays.
PRIVATE_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


class Command(BaseCommand):
    help = (
        "Lift the sign-in lockout of a username and/or a client address and clear their failure "
        "counts; audited as user.login_unlocked. Example: login_unlock --username alice"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="", help="The locked account's username.")
        parser.add_argument("--address", default="", help="A locked client address.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["username"] and not options["address"]:
            raise CommandError("Name a --username or an --address to unlock.")
        backend = settings.CACHES["default"]["BACKEND"]
        if backend in PRIVATE_CACHES:
            raise CommandError(
                f"The cache ({backend}) is a cache of its own in each process, so the web "
                "server's lockouts are out of this command's reach. Configure a shared cache "
                "(CACHE_URL, or the default file cache under CACHE_DIR) and restart the web "
                "server; or use the admin's user list action, which runs in the web process."
            )
        try:
            operator = getpass.getuser()
        except Exception:  # no login name in a bare container: the command still works
            operator = "operator"
        by = f"{operator} (manage.py login_unlock)"
        unlocked = login_unlock(username=options["username"], address=options["address"], by=by)
        if unlocked:
            self.stdout.write(self.style.SUCCESS(f"Unlocked: {', '.join(unlocked)}."))
        else:
            self.stdout.write("Nothing was locked; failure counts cleared.")
