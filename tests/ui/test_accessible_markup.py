"""Markup a screen reader relies on, checked on the server's HTML (axe-core checks the same in
the browser tests): ids are unique, every aria-describedby names an element that exists, and the
messages' live region keeps its list a list."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser
from typing import Any

import pytest
from django.urls import reverse

from identities.models import IdentityRequest
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: Counter[str] = Counter()
        self.described_by: list[tuple[str, str]] = []
        self.list_roles: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if values.get("id"):
            self.ids[values["id"]] += 1
        for target in values.get("aria-describedby", "").split():
            self.described_by.append((values.get("id", tag), target))
        if tag in {"ul", "ol"} and values.get("role"):
            self.list_roles.append((tag, values["role"]))


def _markup(html: str) -> _Markup:
    parser = _Markup()
    parser.feed(html)
    return parser


def _assert_accessible(html: str) -> None:
    markup = _markup(html)
    duplicates = [element_id for element_id, count in markup.ids.items() if count > 1]
    assert duplicates == []
    dangling = [
        (owner, target) for owner, target in markup.described_by if target not in markup.ids
    ]
    assert dangling == []
    assert markup.list_roles == []  # a role on a list takes its list role away


def test_the_identity_page_has_one_justification_per_form_and_named_help(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(requester).get(
        reverse("identity_detail", args=[ready_request.identity_id])
    )

    html = response.content.decode()
    assert 'id="decommission-justification"' in html
    assert 'for="decommission-justification"' in html
    assert 'id="decommission-justification_helptext"' in html
    _assert_accessible(html)


@pytest.mark.parametrize("name", ["api_tokens", "audit_log", "request_new", "request_list"])
def test_forms_point_only_at_help_that_exists(
    client_for: ClientFor, requester: Any, cluster: Any, name: str
) -> None:
    _assert_accessible(client_for(requester).get(reverse(name)).content.decode())


def test_a_message_is_announced_and_stays_a_list(
    client_for: ClientFor, requester: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(requester).post(
        reverse("request_cancel", args=[pending_request.pk]), follow=True
    )

    html = response.content.decode()
    assert '<div role="status">' in html
    assert f"Request #{pending_request.pk} cancelled." in html
    _assert_accessible(html)
