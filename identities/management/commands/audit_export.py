"""Stream the audit trail as JSON Lines or CSV (with both hashes, so a copy can be re-verified)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from identities.audit import EXPORT_FIELDS, audit_export_rows, canonical_json


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
        count = 0
        if fmt == "csv":
            writer = csv.DictWriter(stream, fieldnames=EXPORT_FIELDS)
            writer.writeheader()
            for row in audit_export_rows():
                writer.writerow({**row, "data": canonical_json(row["data"])})
                count += 1
        else:
            for row in audit_export_rows():
                stream.write(canonical_json(row) + "\n")
                count += 1
        stream.flush()
        return count


class _Unterminated:
    """Passes text to the command's stdout wrapper without it adding line endings."""

    def __init__(self, wrapper: Any) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()
