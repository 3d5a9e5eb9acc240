"""Every state-changing form refuses a POST without the CSRF token."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import AuditEvent, IdentityRequest
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


def post_routes(identity_request: IdentityRequest) -> list[str]:
    pk, identity_pk = identity_request.pk, identity_request.identity_id
    return [
        reverse("request_new"),
        reverse("request_check"),
        reverse("request_cancel", args=[pk]),
        reverse("request_retry", args=[pk]),
        reverse("request_verify", args=[pk]),
        reverse("request_approve", args=[pk]),
        reverse("request_reject", args=[pk]),
        reverse("identity_repair", args=[identity_pk]),
        reverse("identity_decommission", args=[identity_pk]),
        reverse("identity_add_service_account", args=[identity_pk]),
        reverse("api_tokens"),
        reverse("api_token_revoke", args=[1]),
        reverse("logout"),
    ]


@pytest.mark.parametrize("who", ["requester", "approver"])
def test_posts_without_the_csrf_token_are_refused_and_change_nothing(
    who: str, request: pytest.FixtureRequest, client_for: ClientFor, ready_request: Any
) -> None:
    client = client_for(request.getfixturevalue(who), enforce_csrf_checks=True)
    rows_before = AuditEvent.objects.count()

    for url in post_routes(ready_request):
        response = client.post(url, {"justification": "x", "comment": "x", "name": "x"})
        assert response.status_code == 403, url
        assert b"CSRF" in response.content, url

    assert AuditEvent.objects.count() == rows_before


def test_the_sign_in_form_needs_the_csrf_token(client: Any, requester: Any) -> None:
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post(reverse("login"), {"username": "alice", "password": "test-password"})

    assert response.status_code == 403


def test_a_post_with_the_token_from_the_page_goes_through(
    client_for: ClientFor, requester: Any, pending_request: IdentityRequest
) -> None:
    client = client_for(requester, enforce_csrf_checks=True)
    page = client.get(reverse("request_detail", args=[pending_request.pk]))
    token = page.context["csrf_token"]

    response = client.post(
        reverse("request_cancel", args=[pending_request.pk]), {"csrfmiddlewaretoken": str(token)}
    )

    assert response.status_code == 302
    pending_request.refresh_from_db()
    assert pending_request.status == "cancelled"


def test_every_form_on_the_pages_carries_the_csrf_token(
    client_for: ClientFor, approver: Any, requester: Any, ready_request: IdentityRequest
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
