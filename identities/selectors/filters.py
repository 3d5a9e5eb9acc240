"""Query-string filters (django-filter) for the lists, shared by the API and the web pages. They
narrow what the selectors already made visible; they never widen it.

The API uses these classes as they are (their fields are its documented query parameters); the
web lists subclass them to add a free-text `q` (web/views/lists.py)."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from identities.audit.selectors import events_with_action
from identities.models import (
    AuditEvent,
    DriftState,
    Identity,
    IdentityRequest,
    IdentityStatus,
    RequestKind,
    RequestStatus,
)

# Ids are bigints (DEFAULT_AUTO_FIELD = BigAutoField) on every database the portal runs on. A
# larger number matched nothing on PostgreSQL and made SQLite's driver raise OverflowError (a 500).
ID_MAX = 2**63 - 1


class IdField(forms.IntegerField):
    """A row id in a query string: digits only, from 1 to ID_MAX. Anything else (a fraction, an
    exponent, a sign, a number past the bigint range) is refused with the rule `invalid_id`,
    where Django's DecimalField took `1.5` for id 1 and passed any size on to the database."""

    default_error_messages = {
        "invalid_id": f"An id is a whole number from 1 to {ID_MAX}; got %(value)s.",
    }

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        text = str(value).strip()
        # The length first: int() of a long string is slow, and a ValueError past 4,300 digits.
        if not (text.isascii() and text.isdigit() and len(text) <= 19 and 1 <= int(text) <= ID_MAX):
            raise ValidationError(
                self.error_messages["invalid_id"],
                code="invalid_id",
                params={"value": repr(text[:30])},
            )
        return int(text)


class IdFilter(django_filters.NumberFilter):
    """An exact match on an id column (`IdField`); its field checks the range itself."""

    field_class = IdField

    def get_max_validator(self) -> None:
        return None


class IdentityRequestFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=RequestStatus.choices, help_text="Repeat for several: ?status=pending&status=failed"
    )
    kind = django_filters.ChoiceFilter(choices=RequestKind.choices)
    team = django_filters.CharFilter(field_name="team__name", help_text="Team name.")
    cluster = django_filters.CharFilter(field_name="cluster__name", help_text="Cluster name.")
    app_name = django_filters.CharFilter()
    namespace = django_filters.CharFilter()
    service_account = django_filters.CharFilter()
    requester = django_filters.CharFilter(
        field_name="requester__username", help_text="Username of the requester."
    )
    identity = IdFilter(field_name="identity_id", help_text="Identity id.")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = IdentityRequest
        fields: list[str] = []


class IdentityFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=IdentityStatus.choices)
    drift_state = django_filters.ChoiceFilter(choices=DriftState.choices)
    team = django_filters.CharFilter(field_name="team__name", help_text="Team name.")
    cluster = django_filters.CharFilter(field_name="cluster__name", help_text="Cluster name.")
    app_name = django_filters.CharFilter()
    name = django_filters.CharFilter(help_text="The managed identity's Azure name.")

    class Meta:
        model = Identity
        fields: list[str] = []


class AuditEventFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="ISO 8601, inclusive."
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="ISO 8601, exclusive."
    )
    actor = django_filters.CharFilter(
        field_name="actor_label", help_text="Username, or 'system' for the worker."
    )
    team = django_filters.CharFilter(
        method="filter_team", help_text="Team name: events about its requests or identities."
    )
    action = django_filters.CharFilter(
        method="filter_action",
        help_text="Exact action (identity_request.approved), or a prefix ending in a dot "
        "(identity_request.).",
    )
    identity_request = IdFilter(field_name="identity_request_id", help_text="Request id.")
    identity = IdFilter(field_name="identity_id", help_text="Identity id.")

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def filter_team(
        self, queryset: QuerySet[AuditEvent], name: str, value: str
    ) -> QuerySet[AuditEvent]:
        return queryset.filter(
            Q(identity_request__team__name=value) | Q(identity__team__name=value)
        )

    def filter_action(
        self, queryset: QuerySet[AuditEvent], name: str, value: str
    ) -> QuerySet[AuditEvent]:
        return events_with_action(queryset, value)
