"""django-filter's backend, skipped when the query string names none of the view's filters."""

from __future__ import annotations

from typing import Any

from django_filters.rest_framework import DjangoFilterBackend


class QueryFilterBackend(DjangoFilterBackend):
    """An absent filter filters nothing, so with no filter parameter in the query string the
    queryset is returned as it is: building and validating the filter form for nothing was a
    millisecond of every unfiltered list. A parameter that starts with a filter's name (the
    name itself, or a suffixed form such as `_min`) runs the filter set as before, invalid
    values answered with its 400."""

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            names = tuple(filterset_class.base_filters)
            if not any(key.startswith(names) for key in request.query_params):
                return queryset
        return super().filter_queryset(request, queryset, view)
