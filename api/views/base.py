"""What every API view shares: authentication and throttling from settings, JSON in and out,
token scopes, and problem documents rendered as application/problem+json."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import NotAcceptable
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import BasePagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from api.pagination import ApiCursorPagination
from api.permissions import HasTokenScope
from api.problems import (
    PROBLEM_MEDIA_TYPE,
    PROBLEM_TYPES,
    TYPE_PREFIX,
    ProblemResponse,
)
from api.renderers import ProblemJSONRenderer

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class ApiContentNegotiation(DefaultContentNegotiation):
    """An unknown `?format=` is a 406 (DRF's default answers 404, as for a missing object)."""

    def filter_renderers(
        self, renderers: Iterable[BaseRenderer], format: str
    ) -> list[BaseRenderer]:
        renderers = list(renderers)
        matching = [renderer for renderer in renderers if renderer.format == format]
        if not matching:
            offered = ", ".join(renderer.format for renderer in renderers)
            raise NotAcceptable(f"format={format!r} is not available here; use one of: {offered}.")
        return matching


class ApiView(GenericAPIView):
    """Base of the API's views. GenericAPIView only for its filter and pagination helpers: the
    querysets come from selectors (`get_queryset`), never from a class attribute."""

    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    permission_classes = [IsAuthenticated, HasTokenScope]
    pagination_class: type[BasePagination] | None = ApiCursorPagination
    filter_backends: Sequence[Any] = ()
    content_negotiation_class = ApiContentNegotiation
    metadata_class = None  # no OPTIONS self-description: the OpenAPI schema documents the API
    # The token scope a GET needs (None: any token), and a POST (None: no token may).
    read_scope: ClassVar[str | None] = "read"
    write_scope: ClassVar[str | None] = None

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(response, ProblemResponse):
            # Errors are problem+json even where the client asked for YAML or CSV.
            request.accepted_renderer = ProblemJSONRenderer()
            request.accepted_media_type = PROBLEM_MEDIA_TYPE
        return super().finalize_response(request, response, *args, **kwargs)

    def actor(self) -> User:
        """The authenticated user (IsAuthenticated has run; never anonymous here)."""
        return cast("User", self.request.user)

    def paginated(self, queryset: Any, serializer_class: Any) -> Response:
        """Filter, order and page `queryset`, then serialize the page."""
        page = self.paginate_queryset(self.filter_queryset(queryset))
        assert page is not None  # noqa: S101 - every list view has a paginator
        return self.get_paginated_response(
            serializer_class(page, many=True, context=self.get_serializer_context()).data
        )


@csrf_exempt  # it changes nothing; CSRF's HTML 403 would hide the 404
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Anything under /api/v1/ that matches no route (bad ids included): a 404 problem rather
    than the site's HTML page, the same whoever asks."""
    body = {
        "type": TYPE_PREFIX + "not-found",
        "title": PROBLEM_TYPES["not-found"][1],
        "status": 404,
        "detail": "No such endpoint or object.",
        "instance": request.path,
    }
    return JsonResponse(body, status=404, content_type=PROBLEM_MEDIA_TYPE)
