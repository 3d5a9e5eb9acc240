"""GET /api/v1/identity-requests/{id}/ with `Prefer: wait=N` (RFC 7240): an ETag per revision,
conditional GETs, and a long-poll that answers as soon as the request changes, without holding
a database connection while it waits."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from identities.models import IdentityRequest
from identities.selectors import identity_request_wait
from identities.services import identity_request_approve
from tests.api.conftest import FileRequest, TokenFactory, approve

DB = pytest.mark.django_db
TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def detail(pk: int) -> str:
    return f"/api/v1/identity-requests/{pk}/"


@pytest.fixture
def pipeline(requester: Any, make_token: TokenFactory, token_client: Any) -> Any:
    return token_client(make_token(requester, ["read"]))


@DB
def test_every_read_carries_an_etag_that_moves_with_the_status(
    pipeline: Any, pending_request: IdentityRequest, approver: Any
) -> None:
    first = pipeline.get(detail(pending_request.pk))
    again = pipeline.get(detail(pending_request.pk))
    approve(pending_request, approver)
    after = pipeline.get(detail(pending_request.pk))

    assert first["ETag"].startswith('W/"pending.')
    assert again["ETag"] == first["ETag"]
    assert after["ETag"].startswith('W/"approved.')


@DB
def test_if_none_match_is_a_conditional_get(
    pipeline: Any, pending_request: IdentityRequest
) -> None:
    etag = pipeline.get(detail(pending_request.pk))["ETag"]

    same = pipeline.get(detail(pending_request.pk), HTTP_IF_NONE_MATCH=etag)
    other = pipeline.get(detail(pending_request.pk), HTTP_IF_NONE_MATCH='W/"pending.0"')

    assert (same.status_code, same.content, same["ETag"]) == (304, b"", etag)
    assert "Preference-Applied" not in same
    assert other.status_code == 200


@DB
def test_a_second_approval_of_an_exception_moves_the_etag_though_the_status_stays(
    pipeline: Any, file_request: FileRequest, approver: Any
) -> None:
    exception = file_request(
        is_exception=True,
        justification="Checkout needs this for the migration window, approved by the CISO.",
    )
    etag = pipeline.get(detail(exception.pk))["ETag"]
    identity_request_approve(identity_request=exception, approver=approver)

    response = pipeline.get(detail(exception.pk), HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert len(response.json()["approvals"]) == 1


@DB
@override_settings(API_WAIT_MAX_SECONDS=1)
def test_the_wait_is_capped_and_an_unchanged_request_answers_at_the_timeout(
    pipeline: Any, pending_request: IdentityRequest
) -> None:
    etag = pipeline.get(detail(pending_request.pk))["ETag"]

    started = time.monotonic()
    unchanged = pipeline.get(
        detail(pending_request.pk), HTTP_PREFER="respond-async, wait=100", HTTP_IF_NONE_MATCH=etag
    )
    since = pipeline.get(f"{detail(pending_request.pk)}?since=pending", HTTP_PREFER="wait=100")
    elapsed = time.monotonic() - started

    assert unchanged.status_code == 304
    assert unchanged["Preference-Applied"] == "wait=1"
    assert (since.status_code, since.json()["status"]) == (200, "pending")
    assert since["Preference-Applied"] == "wait=1"
    assert 1.8 <= elapsed < 6


@DB
def test_a_request_already_past_the_seen_status_answers_at_once(
    pipeline: Any, pending_request: IdentityRequest, approver: Any
) -> None:
    approve(pending_request, approver)

    started = time.monotonic()
    response = pipeline.get(f"{detail(pending_request.pk)}?since=pending", HTTP_PREFER="wait=30")

    assert time.monotonic() - started < 2
    assert (response.status_code, response.json()["status"]) == (200, "approved")


@DB
def test_bad_wait_and_since_values_are_problems_naming_them(
    pipeline: Any, pending_request: IdentityRequest
) -> None:
    bad_wait = pipeline.get(detail(pending_request.pk), HTTP_PREFER="wait=soon")
    bad_since = pipeline.get(f"{detail(pending_request.pk)}?since=done", HTTP_PREFER="wait=5")

    assert bad_wait.status_code == 400
    assert bad_wait["Content-Type"] == "application/problem+json"
    assert [(e["field"], e["rule"]) for e in bad_wait.json()["errors"]] == [
        ("Prefer", "wait_seconds")
    ]
    assert bad_since.status_code == 400
    assert [e["field"] for e in bad_since.json()["errors"]] == ["since"]


@DB
def test_another_team_and_anonymous_get_no_wait_and_no_etag(
    pending_request: IdentityRequest,
    outsider: Any,
    client_for: Any,
    api_client: Any,
) -> None:
    started = time.monotonic()
    other = client_for(outsider).get(
        f"{detail(pending_request.pk)}?since=pending", HTTP_PREFER="wait=30"
    )
    anonymous = api_client.get(f"{detail(pending_request.pk)}?since=pending", HTTP_PREFER="wait=30")

    assert time.monotonic() - started < 2
    assert (other.status_code, anonymous.status_code) == (404, 401)
    assert "ETag" not in other


@TRANSACTIONAL
def test_the_long_poll_answers_as_soon_as_an_approval_commits(
    requester: Any,
    approver: Any,
    make_token: TokenFactory,
    token_client: Any,
    file_request: FileRequest,
) -> None:
    pending_request = file_request()
    client = token_client(make_token(requester, ["read"]))
    etag = client.get(detail(pending_request.pk))["ETag"]

    def approve_soon() -> None:
        try:
            time.sleep(1.0)
            identity_request_approve(identity_request=pending_request, approver=approver)
        finally:
            connection.close()

    approver_thread = threading.Thread(target=approve_soon)
    started = time.monotonic()
    approver_thread.start()
    response = client.get(
        detail(pending_request.pk), HTTP_PREFER="wait=30", HTTP_IF_NONE_MATCH=etag
    )
    elapsed = time.monotonic() - started
    approver_thread.join(timeout=30)

    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response["ETag"] != etag
    assert response["Preference-Applied"] == "wait=30"
    assert 0.9 <= elapsed < 4, "answered within a poll interval of the change, not at the timeout"


@TRANSACTIONAL
def test_no_database_connection_is_held_while_waiting(file_request: FileRequest) -> None:
    pending_request = file_request()
    now = [0.0]
    open_while_asleep = []

    def sleep(seconds: float) -> None:
        open_while_asleep.append(connection.connection is not None)
        now[0] += seconds

    revision = identity_request_wait(
        pk=pending_request.pk,
        unchanged=lambda revision: revision.status == "pending",
        timeout=5,
        sleep=sleep,
        clock=lambda: now[0],
    )

    assert revision is not None and revision.status == "pending"
    assert open_while_asleep == [False] * 5, "one cheap read per second, connection closed between"
