"""/api/v1/webhooks/: a URL no delivery could use (a port past 65535 or 0, a host that is no
host) is a 400 naming the field `url` and the rule, on registering and on changing, never a 500
and never stored."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

WEBHOOKS = "/api/v1/webhooks/"
UNUSABLE = [
    ("https://a.example:99999/", "invalid_port"),
    ("https://a.example:0/", "invalid_port"),
    ("https://a.example:http/", "invalid_port"),
    ("https://[zz]/", "invalid_host"),
    ("https://[::1/", "invalid_host"),
    ("https://a..example/", "invalid_host"),
]


def _refused_for(response: Any) -> set[tuple[str, str]]:
    assert response.status_code == 400, (response.status_code, response.content)
    assert response["Content-Type"] == "application/problem+json"
    return {(error["field"], error["rule"]) for error in response.json()["errors"]}


@pytest.mark.parametrize(("url", "rule"), UNUSABLE)
def test_registering_an_unusable_url_is_a_400_naming_the_field_and_the_rule(
    url: str, rule: str, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(
        WEBHOOKS, {"team": "payments", "url": url, "events": ["request_filed"]}, format="json"
    )
    assert _refused_for(response) == {("url", rule)}
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(("url", "rule"), UNUSABLE)
def test_changing_to_an_unusable_url_is_a_400_and_the_endpoint_keeps_its_url(
    url: str, rule: str, requester: Any, client_for: Any
) -> None:
    client = client_for(requester)
    created = client.post(
        WEBHOOKS,
        {"team": "payments", "url": "https://a.example/hook", "events": ["request_filed"]},
        format="json",
    )
    assert created.status_code == 201, created.content

    response = client.patch(created["Location"], {"url": url}, format="json")

    assert _refused_for(response) == {("url", rule)}
    assert WebhookEndpoint.objects.get().url == "https://a.example/hook"


def test_a_port_in_range_is_accepted(requester: Any, client_for: Any) -> None:
    response = client_for(requester).post(
        WEBHOOKS,
        {"team": "payments", "url": "https://a.example:8443/hook", "events": ["request_filed"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["url"] == "https://a.example:8443/hook"
