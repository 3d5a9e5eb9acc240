"""One UPDATE for several rows of one table, each row with its own values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import connection
from django.db.models import Case, Field, Model, Value, When
from django.db.models.functions import Cast


def update_rows(model: type[Model], rows: Mapping[Any, Mapping[str, Any]]) -> None:
    """Set each row's values (rows: primary key → {field: value}, the same fields for every
    row) in one statement. A field with one value for every row is set plainly; one whose
    values differ is a CASE on the primary key.

    Django's `bulk_update` puts every field through a CASE over every row (cast on
    PostgreSQL): building that statement took 11 ms for a phase's 21 step rows of 5 fields
    on the 2-core machine, against 3 ms for this one (only the request id differs)."""
    if not rows:
        return
    if len(rows) == 1:
        ((pk, values),) = rows.items()
        model._default_manager.filter(pk=pk).update(**values)
        return
    first = next(iter(rows.values()))
    update: dict[str, Any] = {}
    for name in first:  # in the caller's order: the statement's SET clause follows it
        if all(values[name] == first[name] for values in rows.values()):
            update[name] = first[name]
            continue
        field = model._meta.get_field(name)
        assert isinstance(field, Field)  # noqa: S101 - a column of the table, not a reverse relation
        case = Case(
            *(
                When(pk=pk, then=Value(values[name], output_field=field))
                for pk, values in rows.items()
            ),
            output_field=field,
        )
        # As bulk_update: PostgreSQL types a CASE of parameters as text unless told.
        update[name] = (
            Cast(case, output_field=field)
            if connection.features.requires_casted_case_in_updates
            else case
        )
    model._default_manager.filter(pk__in=list(rows)).update(**update)
