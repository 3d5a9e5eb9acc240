"""CSV exports are safe to open in a spreadsheet (OWASP CSV injection); JSON Lines stays exact."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from identities.audit import audit_record
from identities.audit.export import export_blocks
from identities.models import AuditEvent

# Each starts a cell a spreadsheet would read as a formula (or, for tab and CR, hide a prefix).
DANGEROUS = ["-2+3", '=HYPERLINK("http://x")', "+SUM(A1)", "@cmd", "\tpad", "\rline"]


def _export(fmt: str) -> str:
    return "".join(export_blocks(AuditEvent.objects.order_by("id"), fmt))


@pytest.mark.django_db
def test_csv_cells_that_start_like_a_formula_are_neutralised_and_json_lines_are_not() -> None:
    user = get_user_model().objects.create_user(username="-2+3")
    audit_record(actor=user, action="test.user", data={"tag": "=1+1"})
    for label in DANGEROUS[1:]:
        audit_record(actor=None, action="test.label", actor_label=label, data={})

    rows = list(csv.DictReader(io.StringIO(_export("csv"))))
    labels = [row["actor_label"] for row in rows]
    assert labels == ["'" + label for label in DANGEROUS]
    for row in rows:  # no cell at all starts like a formula
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", row
    lines = [json.loads(line) for line in _export("jsonl").splitlines()]
    assert [line["actor_label"] for line in lines] == DANGEROUS
    assert lines[0]["data"] == {"tag": "=1+1"}


@pytest.mark.django_db
def test_csv_leaves_ordinary_cells_alone(requester: Any) -> None:
    audit_record(actor=requester, action="test.plain", data={"n": -1})
    (row,) = csv.DictReader(io.StringIO(_export("csv")))
    assert row["actor_label"] == requester.username
    assert row["data"] == '{"n":-1}'
