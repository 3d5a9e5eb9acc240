"""Query-string filters (django-filter) for the lists, shared by the API and the web pages. They
narrow what the selectors already made visible; they never widen it.

The API uses these classes as they are (their fields are its documented query parameters); the
web lists subclass them to add a free-text `q` (web/views/lists.py)."""

from __future__ import annotations

import django_filters
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
    identity = django_filters.NumberFilter(field_name="identity_id", help_text="Identity id.")
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
    identity_request = django_filters.NumberFilter(field_name="identity_request_id")
    identity = django_filters.NumberFilter(field_name="identity_id")

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
