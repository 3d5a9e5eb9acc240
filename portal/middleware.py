"""Answering a database outage with 503 + Retry-After instead of a 500 error page."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

from api.problems import (
    DATABASE_UNAVAILABLE,
    PROBLEM_MEDIA_TYPE,
    database_unavailable_problem,
)


class DatabaseUnavailableMiddleware:
    """A view that loses its database (unreachable, or the connection broke mid-request) answers
    503 with Retry-After: the 503 page, or a problem document under /api/. The API's own views
    already map these errors in their exception handler; this covers every other view."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_UNAVAILABLE):
            return None
        problem = database_unavailable_problem(exception, request.path)
        headers = {"Retry-After": problem["Retry-After"]}
        if request.path.startswith("/api/"):
            return JsonResponse(
                problem.data, status=503, content_type=PROBLEM_MEDIA_TYPE, headers=headers
            )
        # A standalone page: base.html would ask the database who the user is.
        page = loader.get_template("503.html").render()
        return HttpResponse(page, status=503, headers=headers)
