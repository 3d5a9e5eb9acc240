"""Malformed query parameters are 400 problems naming the parameter and its rule, never a 500
(or a 404): a cursor the portal did not hand out, an id beyond the database's bigint range."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from identities.models import AuditEvent, IdentityRequest

pytestmark = pytest.mark.django_db

HUGE_ID = "99999999999999999999999"
BIGINT_MAX = 2**63 - 1


def cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CURSORS = {
    "nul position": cursor("p=\x00"),  # cD0A
    "date position on an id ordering": cursor("o=1&p=2026-01-01"),
    "not base64": "garbage",
    "not ascii": "w6k=",  # base64 of "é"
    "negative offset": cursor("o=-1"),
    "offset not a number": cursor("o=x"),
    "reverse flag not a number": cursor("r=yes"),
    "position beyond bigint": cursor(f"p={HUGE_ID}"),
    "empty position": cursor("p="),
}
LISTS = [
    "/api/v1/identity-requests/",
    "/api/v1/identities/",
    "/api/v1/audit-events/",
    "/api/v1/access-reviews/",
    "/api/v1/ownership-transfers/",
    "/api/v1/tokens/",
    "/api/v1/trust-rules/",
    "/api/v1/service-tokens/",
    "/api/v1/webhooks/",
]


def rules(response: Any) -> list[tuple[str, str]]:
    return [(error["field"], error["rule"]) for error in response.json()["errors"]]


def assert_problem(response: Any, field: str, rule: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert rules(response) == [(field, rule)]


@pytest.mark.parametrize("value", CURSORS.values(), ids=CURSORS.keys())
@pytest.mark.parametrize("path", LISTS)
def test_a_malformed_cursor_on_any_list_is_a_400_naming_the_cursor(
    path: str, value: str, admin_user: Any, client_for: Any
) -> None:
    assert_problem(client_for(admin_user).get(path, {"cursor": value}), "cursor", "invalid_cursor")


@pytest.mark.parametrize("value", CURSORS.values(), ids=CURSORS.keys())
def test_a_malformed_cursor_on_a_requests_audit_trail_is_a_400(
    value: str, pending_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).get(
        f"/api/v1/identity-requests/{pending_request.pk}/audit/", {"cursor": value}
    )
    assert_problem(response, "cursor", "invalid_cursor")


@pytest.mark.parametrize(
    "value", ["p=abc", "p=2026-01-01", "p=\x00", "o=1&p=2026-01-01T00:00:00"], ids=str
)
def test_a_position_that_is_not_a_time_is_refused_on_a_time_ordering(
    value: str, approver: Any, client_for: Any
) -> None:
    response = client_for(approver).get(
        "/api/v1/identity-requests/", {"ordering": "created_at", "cursor": cursor(value)}
    )
    assert_problem(response, "cursor", "invalid_cursor")


def test_the_cursors_the_portal_hands_out_still_page_both_ways(
    ready_request: IdentityRequest, file_request: Any, auditor: Any, client_for: Any
) -> None:
    file_request(app_name="two", service_account="two")
    client = client_for(auditor)
    first = client.get("/api/v1/audit-events/", {"page_size": 1}).json()
    following = client.get(first["next"]).json()
    back = client.get(following["previous"]).json()
    by_time = client.get("/api/v1/identity-requests/", {"ordering": "created_at", "page_size": 1})
    later = client.get(by_time.json()["next"])

    assert following["results"][0]["id"] < first["results"][0]["id"]
    assert back["results"] == first["results"]
    assert later.status_code == 200
    assert later.json()["results"][0]["id"] > by_time.json()["results"][0]["id"]


@pytest.mark.parametrize("value", [HUGE_ID, str(BIGINT_MAX + 1), "1.5", "1e3", "-1", "0", "x"])
@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/audit-events/", "identity_request"),
        ("/api/v1/audit-events/", "identity"),
        ("/api/v1/audit-events/export/", "identity_request"),
        ("/api/v1/audit-events/export/", "identity"),
        ("/api/v1/identity-requests/", "identity"),
    ],
)
def test_an_id_filter_outside_the_bigint_range_or_not_an_integer_is_a_400(
    path: str, parameter: str, value: str, auditor: Any, client_for: Any
) -> None:
    response = client_for(auditor).get(path, {parameter: value})
    assert_problem(response, parameter, "invalid_id")
    assert "9223372036854775807" in response.json()["errors"][0]["message"]


def test_the_largest_id_filters_to_nothing_and_a_real_id_still_filters(
    pending_request: IdentityRequest, auditor: Any, client_for: Any
) -> None:
    client = client_for(auditor)
    largest = client.get("/api/v1/audit-events/", {"identity_request": str(BIGINT_MAX)})
    real = client.get("/api/v1/audit-events/", {"identity_request": str(pending_request.pk)})
    exported = client.get("/api/v1/audit-events/export/", {"identity_request": f" {BIGINT_MAX}"})

    assert (largest.status_code, largest.json()["results"]) == (200, [])
    assert [row["id"] for row in real.json()["results"]] == list(
        AuditEvent.objects.filter(identity_request=pending_request)
        .order_by("-id")
        .values_list("id", flat=True)
    )
    assert exported.status_code == 200
    assert b"".join(exported.streaming_content) == b""  # type: ignore[attr-defined]


@pytest.mark.parametrize("parameter", ["identity_request", "identity"])
def test_the_audit_page_shows_a_huge_id_as_a_form_error(
    parameter: str, pending_request: IdentityRequest, auditor: Any, client_for: Any
) -> None:
    # The web page is forgiving where the API answers 400: the form shows the error.
    response = client_for(auditor).get("/audit/", {parameter: HUGE_ID})

    assert response.status_code == 200
    assert "less than or equal to 9223372036854775807" in response.content.decode()


def test_the_request_list_page_ignores_a_huge_identity_filter(
    pending_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).get("/requests/", {"identity": HUGE_ID})

    assert response.status_code == 200
