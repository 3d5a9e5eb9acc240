"""Stream the audit trail as JSON Lines or CSV (with both hashes, so a copy can be re-verified)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from identities.audit.export import export_blocks
from identities.models import AuditEvent


class Command(BaseCommand):
    help = "Export the audit trail in chain order as JSON Lines (default) or CSV."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--output", help="Write to this file instead of standard output.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["output"]:
            with Path(options["output"]).open("w", encoding="utf-8", newline="") as stream:
                count = self.export(stream, options["format"])
            self.stderr.write(f"exported {count} audit rows to {options['output']}")
        else:
            try:
                self.export(_Unterminated(self.stdout), options["format"])
            except BrokenPipeError:
                # The reader (e.g. `| head`) stopped early; that is not an error.
                return

    def export(self, stream: Any, fmt: str) -> int:
        """Write the whole chain in id order; returns the number of rows."""
        count = 0
        for block in export_blocks(AuditEvent.objects.order_by("id"), fmt):
            stream.write(block)
            count += block.count("\n")
        stream.flush()
        # One line per row (no field holds a raw line break: JSON escapes them, and actions and
        # user names have none), plus the CSV header.
        return count - 1 if fmt == "csv" else count


class _Unterminated:
    """Passes text to the command's stdout wrapper without it adding line endings."""

    def __init__(self, wrapper: Any) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()
