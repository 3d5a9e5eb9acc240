"""Walk the audit chain; exit non-zero naming the first row that does not verify."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from identities.audit import audit_verify_chain
from identities.audit.anchor import configured_sink
from identities.models import ChainCheckStatus, ChainCheckTrigger
from identities.services import audit_chain_check_run, audit_chain_check_start


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
        processes = max(1, options["processes"])
        check, created = audit_chain_check_start(actor=None, trigger=ChainCheckTrigger.COMMAND)
        if created:
            # Recorded (and signed) like the scheduled checks: the audit page shows it, and
            # the next check compares the chain with the last row this one verified.
            check = audit_chain_check_run(check_id=check.pk, processes=processes)
            ok = check.status == ChainCheckStatus.PASSED
            broken_id, reason = check.broken_id, check.reason
            rows, last_hash = check.rows_checked, check.last_hash
        else:
            self.stderr.write(f"check #{check.pk} is running already; walking without recording")
            report = audit_verify_chain(processes=processes)
            ok, broken_id, reason = report.ok, report.broken_id, report.reason
            rows, last_hash = report.rows_checked, report.last_hash
        if not ok:
            where = f" at row {broken_id}" if broken_id is not None else ""
            raise CommandError(
                f"audit chain BROKEN{where} ({rows} rows verified before it): {reason}",
                returncode=1,
            )
        self.stdout.write(self.style.SUCCESS(f"audit chain OK: {rows} rows, last hash {last_hash}"))
        sink = configured_sink()
        if sink is None:
            self.stderr.write(
                "warning: no anchor sink (AUDIT_ANCHOR_SINK=none): a cut tail "
                "with deleted check records would go unnoticed"
            )
        else:
            self.stdout.write(f"checked against the checkpoints in {sink.describe()}")
            if unprotected := sink.unprotected():
                self.stderr.write(f"warning: {unprotected}")
