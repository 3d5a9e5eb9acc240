"""Walk the audit chain; exit non-zero naming the first row that does not verify."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from identities.audit import audit_verify_chain


class Command(BaseCommand):
    help = "Verify the hash chain of the audit trail; names the first broken row."
    # It only reads one table: skip the project-wide system checks (about 1 s of start-up, a
    # tenth of the time budget for a million rows). `manage.py check` still runs them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--processes",
            type=int,
            default=min(4, os.cpu_count() or 1),
            help="walk a long chain (PostgreSQL) in this many slices in parallel "
            "(default: the CPUs, at most 4; 1 walks it in this process)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_verify_chain(processes=max(1, options["processes"]))
        if not report.ok:
            raise CommandError(
                f"audit chain BROKEN at row {report.broken_id} "
                f"({report.rows_checked} rows verified before it): {report.reason}",
                returncode=1,
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"audit chain OK: {report.rows_checked} rows, last hash {report.last_hash}"
            )
        )
