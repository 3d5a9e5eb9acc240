"""The global audit log for auditors: filtered pages, and a streaming export (JSON Lines or CSV)
carrying both hashes so a copy can be re-verified offline."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.filters import OrderingFilter
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples
from api.filtering import QueryFilterBackend
from api.permissions import HasTokenScope, IsAuditorOrAdmin
from api.renderers import CsvRenderer, JsonLinesRenderer
from api.serializers import AuditEventOutput
from api.views.base import ApiView
from identities.audit.export import export_blocks
from identities.audit.selectors import audit_events_visible_to
from identities.selectors.filters import AuditEventFilter

TAG = "audit"


class AuditEventListView(ApiView):
    permission_classes = [IsAuthenticated, HasTokenScope, IsAuditorOrAdmin]
    filter_backends = [QueryFilterBackend, OrderingFilter]
    filterset_class = AuditEventFilter
    ordering_fields = ["id"]
    ordering = ["-id"]

    def get_queryset(self) -> Any:
        return audit_events_visible_to(self.request.user)

    @extend_schema(
        tags=[TAG],
        summary="The global audit log",
        description="Auditors and admins. Newest first; filter by time, actor, team and action.",
        responses=AuditEventOutput(many=True),
        examples=[examples.AUDIT_PAGE],
    )
    def get(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), AuditEventOutput)


class AuditExportView(ApiView):
    permission_classes = [IsAuthenticated, HasTokenScope, IsAuditorOrAdmin]
    renderer_classes = [JsonLinesRenderer, CsvRenderer]
    filter_backends = [QueryFilterBackend]
    filterset_class = AuditEventFilter
    pagination_class = None

    def get_queryset(self) -> Any:
        return audit_events_visible_to(self.request.user)

    @extend_schema(
        tags=[TAG],
        summary="Export the audit log",
        description="Streams the (filtered) log in chain order with `prev_hash` and `hash`: "
        "JSON Lines by default, CSV with `Accept: text/csv` or `?format=csv`. Takes the same "
        "filters as the log.",
        responses={
            (200, "application/jsonl"): OpenApiResponse(OpenApiTypes.STR),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
        },
        examples=[examples.AUDIT_EXPORT_JSONL, examples.AUDIT_EXPORT_CSV],
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        # Chain order without the selector's joins: the rows carry ids, not related objects.
        events = self.filter_queryset(self.get_queryset()).select_related(None).order_by("id")
        renderer = request.accepted_renderer
        response = StreamingHttpResponse(
            export_blocks(events, "csv" if renderer.format == "csv" else "jsonl"),
            content_type=f"{renderer.media_type}; charset=utf-8",
        )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{renderer.format}"'
        return response
