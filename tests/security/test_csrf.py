"""CSRF: generated from the URL resolver, every route refuses an unsafe request from a signed-in
browser that lacks the CSRF token (web UI, admin and the session-authenticated API alike), and
changes nothing; the same request with the token gets past the check; API tokens need none."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from identities.models import AuditEvent, IdentityRequest
from tests.security import test_ui_authorization as ui_matrix
from tests.security.routes import Route, accepted_methods, all_routes, routes_of
from tests.security.world import World, token_of

pytestmark = [pytest.mark.security, pytest.mark.django_db]

UNSAFE = ("post", "put", "patch", "delete")


def signed_in(user: Any, client_class: type[Client] = Client) -> Client:
    client = client_class(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def refused_for_csrf(response: Any) -> bool:
    return response.status_code == 403 and b"CSRF" in response.content


# Routes that may skip the CSRF check, and why; each is still checked to do what it says.
CSRF_EXEMPT = {
    "api:not-found": 404,  # the API's catch-all: the same 404 problem to everything, no change
}


def csrf_token_of(client: Client) -> str:
    client.get(reverse("login"))  # a page with a form sets the CSRF cookie
    return str(client.cookies["csrftoken"].value)


@pytest.mark.parametrize("route", all_routes(), ids=lambda route: route.name)
def test_every_route_refuses_unsafe_methods_without_the_csrf_token(
    route: Route, admin_user: Any
) -> None:
    # A superuser: whatever the route, it is the CSRF check that must stop the request.
    client = signed_in(admin_user, APIClient if route.kind == "api" else Client)
    rows_before = AuditEvent.objects.count()

    for method in UNSAFE:
        response = getattr(client, method)(route.url, {"name": "x", "comment": "x"})
        where = f"{method.upper()} {route.url} without a CSRF token"
        if route.name in CSRF_EXEMPT:
            assert response.status_code == CSRF_EXEMPT[route.name], where
        elif not refused_for_csrf(response):
            # A 403 page that does not say why (DRF's HTML renderer): the token must be what
            # makes the difference.
            assert response.status_code == 403, f"{where}: {response.status_code}"
            with_token = getattr(client, method)(
                route.url, {"name": "x"}, HTTP_X_CSRFTOKEN=csrf_token_of(client)
            )
            assert with_token.status_code != 403, f"{where}: 403 even with the token"

    assert AuditEvent.objects.count() == rows_before


POST_ROWS = [row for row in ui_matrix.ROWS if row.method == "post"]


def test_every_ui_route_accepting_post_is_in_the_list(admin_user: Any) -> None:
    """The list the token test below walks (the UI matrix's POST rows) holds every UI route that
    accepts POST, asked of each route the resolver knows."""
    accepting = {
        route.name for route in routes_of("ui") if "post" in accepted_methods(route, admin_user)
    }

    assert len(accepting) >= 14
    assert accepting == {row.name for row in POST_ROWS}


@pytest.mark.parametrize("row", POST_ROWS, ids=lambda row: row.name)
def test_a_post_with_the_csrf_token_gets_past_the_check(
    row: ui_matrix.Row, request: pytest.FixtureRequest
) -> None:
    """The other half: the refusals above are the CSRF check's, not something else's."""
    world = World(request.getfixturevalue)
    actor = next(
        (actor for actor, status in row.expect.items() if status in (200, 302)), "requester_a"
    )
    client = Client(enforce_csrf_checks=True)
    if actor != "anonymous":
        client.force_login(world.users[actor])
    token = csrf_token_of(client)
    data = {**(row.data(world) if row.data else {}), "csrfmiddlewaretoken": token}

    response = client.post(row.url(world), data)

    assert not refused_for_csrf(response)
    assert response.status_code == row.expected(actor), response.content[:300]


API_UNSAFE = [
    (route, method)
    for route in routes_of("api")
    if route.name != "api:not-found"
    for method in UNSAFE
    if hasattr(route.callback.cls, method)
]


@pytest.mark.parametrize(
    ("route", "method"), API_UNSAFE, ids=[f"{m.upper()} {r.name}" for r, m in API_UNSAFE]
)
def test_api_session_calls_need_the_csrf_token_and_token_calls_do_not(
    route: Route, method: str, requester: Any
) -> None:
    session = signed_in(requester, APIClient)
    bearer = APIClient(enforce_csrf_checks=True)
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {token_of(requester, ['read', 'request'])}")

    without_token = getattr(session, method)(route.url, {}, format="json")
    with_bearer = getattr(bearer, method)(route.url, {}, format="json")

    assert refused_for_csrf(without_token), without_token.content[:200]
    assert not refused_for_csrf(with_bearer), with_bearer.content[:200]


def test_an_api_session_call_with_the_csrf_token_goes_through(
    requester: Any, pending_request: IdentityRequest
) -> None:
    client = signed_in(requester, APIClient)
    token = csrf_token_of(client)

    response = client.post(
        f"/api/v1/identity-requests/{pending_request.pk}/cancel/",
        {},
        format="json",
        HTTP_X_CSRFTOKEN=token,
    )

    assert response.status_code == 200, response.content
    pending_request.refresh_from_db()
    assert pending_request.status == "cancelled"


def test_the_sign_in_form_needs_the_csrf_token(requester: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(reverse("login"), {"username": "alice", "password": "test-password"})

    assert refused_for_csrf(response)


def test_every_form_on_the_pages_carries_the_csrf_token(
    client_for: Any, approver: Any, requester: Any, ready_request: IdentityRequest
) -> None:
    pages = [
        (requester, reverse("request_new")),
        (requester, reverse("request_detail", args=[ready_request.pk])),
        (requester, reverse("identity_detail", args=[ready_request.identity_id])),
        (requester, reverse("api_tokens")),
        (approver, reverse("approval_queue")),
    ]
    for user, url in pages:
        html = client_for(user).get(url).content.decode()
        posts = html.count('method="post"')
        assert posts > 0, url
        assert html.count('name="csrfmiddlewaretoken"') >= posts, url
