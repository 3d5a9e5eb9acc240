"""Cursor pagination: stable under inserts, no COUNT(*) over large tables."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class ApiCursorPagination(CursorPagination):
    """`?cursor=` from the previous page's `next`; `?page_size=` up to 100. The ordering is the
    view's default (newest first by id) unless `?ordering=` picks one of its ordering fields."""

    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 100
    ordering = "-id"
