"""Idempotency-Key: a retried POST acts once and answers the same; a reused key with another
body is a 422; a key in flight is a 409; 5xx answers are not kept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import IdempotencyRecord
from api.idempotency import CLAIM_TIMEOUT, is_idempotent
from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import TokenFactory, new_request_body

pytestmark = pytest.mark.django_db

LIST = "/api/v1/identity-requests/"


@pytest.fixture
def pipeline(
    requester: Any, cluster: Any, catalog: Any, make_token: TokenFactory, token_client: Any
) -> Any:
    return token_client(make_token(requester, ["read", "request"]))


def post(client: Any, body: dict[str, Any], key: str = "deploy-42", path: str = LIST) -> Any:
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_the_same_key_twice_files_one_request_with_one_audit_row(pipeline: Any) -> None:
    first = post(pipeline, new_request_body())
    second = post(pipeline, new_request_body())

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Location"] == first["Location"]
    assert second["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert IdentityRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="identity_request.created").count() == 1


def test_key_order_and_whitespace_do_not_make_a_body_different(pipeline: Any) -> None:
    body = new_request_body()
    post(pipeline, body)
    reordered = dict(reversed(list(body.items())))
    response = post(pipeline, reordered)
    assert response.status_code == 201
    assert IdentityRequest.objects.count() == 1


def test_the_same_key_with_a_different_body_is_a_422(pipeline: Any) -> None:
    post(pipeline, new_request_body())
    response = post(pipeline, new_request_body(justification="Something else entirely."))

    assert response.status_code == 422
    assert response.json()["type"].endswith(":idempotency-key-reused")
    assert IdentityRequest.objects.count() == 1


def test_the_same_key_on_another_endpoint_is_a_422(
    pipeline: Any, pending_request: IdentityRequest
) -> None:
    post(pipeline, new_request_body(service_account="other", app_name="other"))
    response = post(pipeline, {}, path=f"{LIST}{pending_request.pk}/cancel/")
    assert response.status_code == 422


def test_keys_belong_to_one_user(
    pipeline: Any, outsider: Any, make_token: TokenFactory, token_client: Any
) -> None:
    post(pipeline, new_request_body())
    theirs = token_client(make_token(outsider, ["request"]))
    body = new_request_body(team="search", namespace="search", app_name="x", service_account="x")

    response = post(theirs, body)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert IdentityRequest.objects.count() == 2


def test_a_refusal_is_replayed_too_without_acting_again(pipeline: Any) -> None:
    body = new_request_body(namespace="search")
    first = post(pipeline, body)
    second = post(pipeline, body)

    assert first.status_code == second.status_code == 400
    assert second["Content-Type"] == "application/problem+json"
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"


def test_an_approval_retried_with_its_key_approves_once(
    pending_request: IdentityRequest, approver: Any, client_for: Any
) -> None:
    client = client_for(approver)
    url = f"{LIST}{pending_request.pk}/approve/"

    first = post(client, {"comment": "ok"}, key="approve-1", path=url)
    second = post(client, {"comment": "ok"}, key="approve-1", path=url)
    without_key = client.post(url, {"comment": "ok"}, format="json")

    assert first.status_code == second.status_code == 200
    assert second.json()["status"] == "approved"
    assert without_key.status_code == 409, "without the key a retry is a conflict"
    assert AuditEvent.objects.filter(action="identity_request.approved").count() == 1


def _fingerprint(body: dict[str, Any], path: str = LIST) -> str:
    """What the API computes for a JSON POST of `body` to `path`."""
    from rest_framework.parsers import JSONParser
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from api.idempotency import request_fingerprint

    django_request = APIRequestFactory().post(path, body, format="json")
    return request_fingerprint(Request(django_request, parsers=[JSONParser()]))


def _claim(user: Any, key: str, body: dict[str, Any], *, age: timedelta) -> None:
    """A claim left by a request that is still running (or died) `age` ago."""
    IdempotencyRecord.objects.create(
        user=user,
        key=key,
        fingerprint=_fingerprint(body),
        created_at=timezone.now() - age,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def test_a_key_still_in_flight_is_a_409_with_retry_after(pipeline: Any, requester: Any) -> None:
    _claim(requester, "in-flight", new_request_body(), age=timedelta(seconds=1))

    response = post(pipeline, new_request_body(), key="in-flight")

    assert response.status_code == 409
    assert response.json()["type"].endswith(":idempotency-key-in-use")
    assert response["Retry-After"] == "1"
    assert IdentityRequest.objects.count() == 0


def test_a_claim_abandoned_by_a_dead_request_is_taken_over(pipeline: Any, requester: Any) -> None:
    _claim(requester, "crashed", new_request_body(), age=CLAIM_TIMEOUT + timedelta(seconds=1))

    response = post(pipeline, new_request_body(), key="crashed")

    assert response.status_code == 201
    assert IdentityRequest.objects.count() == 1
    assert IdempotencyRecord.objects.get().status == "done"


def test_an_expired_key_can_be_used_again(pipeline: Any) -> None:
    post(pipeline, new_request_body())
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = post(pipeline, new_request_body(justification="A new request after a day."))

    assert response.status_code in {201, 400}
    assert "Idempotent-Replayed" not in response
    assert IdempotencyRecord.objects.count() == 1


def test_the_hourly_purge_deletes_every_expired_record_and_keeps_the_live_ones(
    pipeline: Any, teammate: Any, make_token: TokenFactory, token_client: Any
) -> None:
    from portal.tasks import purge_idempotency_records

    post(pipeline, new_request_body(), key="old")
    post(pipeline, new_request_body(service_account="other"), key="live")
    other = token_client(make_token(teammate, ["read", "request"]))
    post(other, new_request_body(service_account="third"), key="old")
    IdempotencyRecord.objects.filter(key="old").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    # Presenting another key no longer purges the user's expired ones: the beat task does.
    post(pipeline, new_request_body(service_account="fourth"), key="newer")
    assert IdempotencyRecord.objects.filter(key="old").count() == 2

    assert purge_idempotency_records() == 2

    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["live", "newer"]


def test_a_server_error_releases_the_key(pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.views import requests as views

    def explode(**_: Any) -> None:
        raise RuntimeError("database fell over")

    monkeypatch.setattr(views, "identity_request_create", explode)
    failed = post(pipeline, new_request_body())
    monkeypatch.undo()
    retried = post(pipeline, new_request_body())

    assert failed.status_code == 500
    assert failed["Content-Type"] == "application/problem+json"
    assert "database fell over" not in failed.content.decode(), "no internals in the answer"
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried


def test_an_invalid_key_is_refused(pipeline: Any) -> None:
    response = post(pipeline, new_request_body(), key="x" * 256)
    assert response.status_code == 400
    assert IdentityRequest.objects.count() == 0


def _api_views() -> list[Any]:
    from tests.security.routes import routes_of

    return [route.callback.cls for route in routes_of("api") if route.name != "api:not-found"]


def test_every_post_in_the_api_honours_idempotency_keys() -> None:
    posts = [view for view in _api_views() if hasattr(view, "post")]
    assert posts, "the walk found the API's POST views"
    assert [view.__name__ for view in posts if not is_idempotent(view.post)] == []
