"""The web lists' filters: the API's FilterSets (identities.selectors.filters) plus what a page
adds for people (a free-text search box, the drift link of the start page)."""

from __future__ import annotations

from typing import Any, TypeVar

import django_filters
from django.db.models import Model, QuerySet
from django.http import QueryDict

from identities.models import DriftState, IdentityStatus
from identities.selectors.filters import IdentityFilter, IdentityRequestFilter

M = TypeVar("M", bound=Model)


class RequestListFilter(IdentityRequestFilter):
    q = django_filters.CharFilter(field_name="app_name", lookup_expr="icontains")


class IdentityListFilter(IdentityFilter):
    # `all` is the page's "every status, decommissioned too".
    status = django_filters.MultipleChoiceFilter(
        choices=[("all", "All"), *IdentityStatus.choices], method="filter_status"
    )
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    # The start page links ?drift=drifted; the API calls the same filter drift_state.
    drift = django_filters.ChoiceFilter(field_name="drift_state", choices=DriftState.choices)

    @property
    def qs(self) -> QuerySet[Any]:
        # Decommissioned identities are history: shown when asked for (a status, or "all").
        queryset = super().qs
        if not self.data.get("status"):
            queryset = queryset.exclude(status=IdentityStatus.DECOMMISSIONED)
        return queryset

    def filter_status(self, queryset: QuerySet[Any], name: str, value: list[str]) -> QuerySet[Any]:
        return queryset if "all" in value else queryset.filter(status__in=value)


def apply_filters(
    filterset_class: type[django_filters.FilterSet], data: QueryDict, queryset: QuerySet[M]
) -> QuerySet[M]:
    """Filter `queryset` by the query string. A page is forgiving where the API answers 400:
    a value the filter does not accept (a stale link, `status=all`) is ignored, not an error."""
    filterset = filterset_class(data, queryset=queryset)
    if not filterset.is_valid():
        valid = data.copy()
        for name in filterset.errors:
            valid.pop(name, None)
        filterset = filterset_class(valid, queryset=queryset)
    return filterset.qs
