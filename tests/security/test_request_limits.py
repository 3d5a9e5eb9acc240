"""Oversized and too-deeply nested bodies are refused up front: 413 / 400, as a problem document
under /api/ and as an error page in the web UI, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

pytestmark = [pytest.mark.security, pytest.mark.django_db]

API = "/api/v1/identity-requests/"
UI = "/requests/new/"
PROBLEM = "application/problem+json"
TYPE = "tag:workload-identity-portal,2026:problem:"


def post(client: Client, path: str, body: bytes, content_type: str) -> Any:
    return client.post(path, data=body, content_type=content_type)


@pytest.fixture
def signed_in(requester: Any) -> Client:
    client = Client()
    client.force_login(requester)
    return client


@pytest.mark.parametrize("megabytes", [3, 10])
def test_an_oversized_api_body_is_a_413_problem(signed_in: Client, megabytes: int) -> None:
    body = b'{"app_name":"' + b"x" * (megabytes * 1024 * 1024) + b'"}'
    response = post(signed_in, API, body, "application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == TYPE + "payload-too-large" and problem["status"] == 413
    assert "1048576" in problem["detail"]


def test_a_deeply_nested_api_body_is_a_400_problem(signed_in: Client) -> None:
    response = post(signed_in, API, b"[" * 100_000, "application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    assert response.json()["type"] == TYPE + "body-too-deep"


def test_the_depth_limit_counts_brackets_outside_strings_only(signed_in: Client) -> None:
    inside_a_string = b'{"app_name": "' + b"[" * 500 + b'"}'
    response = post(signed_in, API, inside_a_string, "application/json")
    assert response.status_code == 400
    assert response.json()["type"] == TYPE + "validation-error"  # the fields, not the depth
    with override_settings(REQUEST_JSON_MAX_DEPTH=3):
        response = post(signed_in, API, b'{"a": [[{"b": 1}]]}', "application/json")
    assert response.json()["type"] == TYPE + "body-too-deep"


def test_an_oversized_form_in_the_web_ui_is_a_413_page(signed_in: Client) -> None:
    response = signed_in.post(UI, {"justification": "x" * (3 * 1024 * 1024)})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    assert b"too large" in response.content


def test_a_deep_json_body_in_the_web_ui_is_a_400_page(signed_in: Client) -> None:
    response = post(signed_in, UI, b"[" * 100_000, "application/json")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert b"nested too deeply" in response.content


def test_the_limits_are_settings(signed_in: Client) -> None:
    with override_settings(REQUEST_BODY_MAX_BYTES=100):
        response = post(signed_in, API, b'{"app_name": "' + b"x" * 200 + b'"}', "application/json")
    assert response.status_code == 413
