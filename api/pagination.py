"""Cursor pagination: stable under inserts, no COUNT(*) over large tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field, Model
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request


class ApiCursorPagination(CursorPagination):
    """`?cursor=` from the previous page's `next`; `?page_size=` up to 100. The ordering is the
    view's default (newest first by id) unless `?ordering=` picks one of its ordering fields.

    A cursor the portal did not hand out (not base64, a negative offset, a position that is not
    a value of the ordering field) is a 400 naming `cursor` with the rule `invalid_cursor`:
    DRF answered 404 for some and let the rest reach the database (a 500)."""

    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 100
    ordering = "-id"
    invalid_cursor_message = (
        "This cursor was not handed out by the portal: follow the `next` or `previous` link "
        "of a page, or leave the cursor out to start at the first page."
    )

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> list[Any] | None:
        # decode_cursor checks the position against the ordering field of this model.
        self.model: type[Model] = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound:  # DRF's answer to an undecodable cursor or a negative offset
            raise self.invalid_cursor() from None
        if cursor is not None and cursor.position is not None:
            self.check_position(str(cursor.position))  # a str, whatever the stubs say
        return cursor

    def check_position(self, position: str) -> None:
        """The position must be a value of the ordering field, as `_get_position_from_instance`
        writes it (str() of the value), else the database is asked to compare the field with
        something it cannot be: a ValueError for an id, a NUL byte PostgreSQL refuses."""
        name = self.ordering[0].lstrip("-")
        if "\x00" in position:
            raise self.invalid_cursor()
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:  # an annotation: nothing to check it against
            return
        if not isinstance(field, Field):  # a reverse relation: no value of its own
            return
        try:
            value = field.to_python(position)
            field.run_validators(value)  # e.g. an id beyond the database's integer range
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            raise self.invalid_cursor() from None
        if settings.USE_TZ and isinstance(value, datetime) and value.tzinfo is None:
            # The portal writes aware times; a naive one would be read in the server's zone.
            raise self.invalid_cursor()

    def invalid_cursor(self) -> serializers.ValidationError:
        return serializers.ValidationError(
            {
                self.cursor_query_param: [
                    serializers.ErrorDetail(self.invalid_cursor_message, code="invalid_cursor")
                ]
            }
        )
