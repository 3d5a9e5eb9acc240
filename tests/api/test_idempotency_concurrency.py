"""A pipeline's retry racing its own first attempt (real PostgreSQL): one request is filed."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import TokenFactory, new_request_body
from tests.support.services import postgres_or_missing

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_two_simultaneous_posts_with_one_key_file_one_request(
    requester: Any, cluster: Any, catalog: Any, make_token: TokenFactory
) -> None:
    postgres_or_missing()
    raw = make_token(requester, ["request"])
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def post() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        try:
            barrier.wait()
            response = client.post(
                "/api/v1/identity-requests/",
                new_request_body(),
                format="json",
                HTTP_IDEMPOTENCY_KEY="run-1234",
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # The loser either waited for the winner's claim and found it running (409, retry later)
    # or arrived after it finished and got the stored answer (201, replayed).
    assert sorted(statuses) in ([201, 201], [201, 409])
    assert IdentityRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="identity_request.created").count() == 1
