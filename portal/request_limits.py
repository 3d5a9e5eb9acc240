"""Refusing oversized and too-deeply nested request bodies before any view or parser sees them.

A body over REQUEST_BODY_MAX_BYTES (by its Content-Length: nothing is read) answers 413; a JSON
body nested deeper than REQUEST_JSON_MAX_DEPTH answers 400. Under /api/ the answer is a problem
document like the API's other errors; elsewhere an error page. Without this, Python's JSON
decoder hits its recursion limit on `[[[[…` and DRF's request parsing turns a too-large body into
an unhandled error: both were answered 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

from api.problems import PROBLEM_MEDIA_TYPE, problem_response

# A JSON string (with its escapes) or one bracket: brackets inside strings do not nest.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_too_deep(body: bytes, limit: int) -> bool:
    """True when arrays and objects in `body` nest deeper than `limit` (strings skipped). Cheap
    for ordinary bodies: the exact scan runs only when there are more brackets than `limit`."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for token in _JSON_TOKENS.finditer(body):
        first = token.group()[:1]
        if first in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif first in (b"]", b"}"):
            depth -= 1
    return False


def _is_json(request: HttpRequest) -> bool:
    content_type = request.content_type or ""
    return content_type == "application/json" or content_type.endswith("+json")


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class RequestBodyLimitMiddleware:
    """413 for a body over REQUEST_BODY_MAX_BYTES, 400 for JSON deeper than
    REQUEST_JSON_MAX_DEPTH: a problem document under /api/, an error page elsewhere."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.REQUEST_BODY_MAX_BYTES
        if _content_length(request) > limit:
            return self._refuse(
                request,
                "payload-too-large",
                f"The request body is larger than the limit of {limit} bytes.",
                page="413.html",
            )
        if request.method in {"POST", "PUT", "PATCH"} and _is_json(request):
            try:
                body = request.body
            except RequestDataTooBig:  # no usable Content-Length, but too much data
                return self._refuse(
                    request,
                    "payload-too-large",
                    f"The request body is larger than the limit of {limit} bytes.",
                    page="413.html",
                )
            depth = settings.REQUEST_JSON_MAX_DEPTH
            if json_too_deep(body, depth):
                return self._refuse(
                    request,
                    "body-too-deep",
                    f"The JSON body is nested more than {depth} levels deep.",
                    page="400.html",
                )
        return self.get_response(request)

    @staticmethod
    def _refuse(request: HttpRequest, slug: str, detail: str, *, page: str) -> HttpResponse:
        problem = problem_response(slug, detail, instance=request.path)
        if request.path.startswith("/api/"):
            return JsonResponse(
                problem.data, status=problem.status_code, content_type=PROBLEM_MEDIA_TYPE
            )
        # A standalone page: the request never reached the session or the database.
        html = loader.get_template(page).render({"detail": detail}, request)
        return HttpResponse(html, status=problem.status_code)
