"""Every URL pattern of the portal, from Django's URL resolver, with a concrete URL for each.

The security tests generate their cases from this list, so a route added later is covered (or
makes a coverage test fail) without anyone remembering to add it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

API_PREFIX = "api/v1/"
ADMIN_PREFIX = "admin/"

# Sample values for path parameters, by parameter name (converters only check the shape; the
# views decide whether the object exists).
SAMPLES = {
    "pk": "1",
    "object_id": "1",
    "content_type_id": "1",
    "app_label": "identities",
    "name": "aks-test",
    "url": "no-such-page/",
}


@dataclass(frozen=True)
class Route:
    """One URL pattern: its full route text, its (namespaced) name and a URL that reaches it."""

    route: str
    name: str
    url: str
    callback: Any

    @property
    def kind(self) -> str:
        """ "api" (the REST API under /api/v1/), "admin" (Django admin) or "ui" (the rest)."""
        if self.route.startswith(API_PREFIX):
            return "api"
        if self.route.startswith(ADMIN_PREFIX):
            return "admin"
        return "ui"


def _sample(pattern_text: str, regex: bool) -> str:
    """`pattern_text` with every parameter replaced by a sample value."""
    if not regex:
        return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLES.get(m.group(1), "1"), pattern_text)
    text = re.sub(
        r"\(\?P<(\w+)>[^)]*\)",
        lambda m: SAMPLES.get(m.group(1), "1"),
        pattern_text,
    )
    return text.removeprefix("^").removesuffix("$").removeprefix("\\Z").replace("\\", "")


@cache
def all_routes() -> tuple[Route, ...]:
    found: list[Route] = []

    def walk(patterns: list[Any], route: str, url: str, namespace: str) -> None:
        for pattern in patterns:
            text = str(pattern.pattern)
            regex = pattern.pattern.__class__.__name__ == "RegexPattern"
            here_route, here_url = route + text, url + _sample(text, regex)
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, here_route, here_url, inner)
            elif isinstance(pattern, URLPattern):
                name = f"{namespace}{pattern.name}" if pattern.name else here_route
                found.append(Route(here_route, name, "/" + here_url, pattern.callback))

    walk(get_resolver().url_patterns, "", "", "")
    return tuple(found)


def routes_of(kind: str) -> list[Route]:
    return [route for route in all_routes() if route.kind == kind]


def accepted_methods(route: Route, user: Any) -> set[str]:
    """GET and/or POST, whichever `route` does not answer 405 to, asked as `user` signed in
    afresh each time (a POST may sign out) and without CSRF checks. Objects need not exist:
    a view refuses a method before it looks anything up."""
    methods = set()
    for method in ("get", "post"):
        client = Client()
        client.force_login(user)
        if getattr(client, method)(route.url).status_code != 405:
            methods.add(method)
    return methods
