"""Two pipeline runs ensuring the same workload at the same moment, with different
Idempotency-Keys (real PostgreSQL): one request is filed, and both runs get it."""

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


def test_simultaneous_ensures_of_one_workload_file_one_request(
    requester: Any, cluster: Any, catalog: Any, make_token: TokenFactory
) -> None:
    postgres_or_missing()
    raw = make_token(requester, ["request"])
    runs = 4
    barrier = threading.Barrier(runs)
    answers: list[tuple[int, int, str]] = []

    def ensure(run: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        try:
            barrier.wait()
            response = client.post(
                "/api/v1/identity-requests/ensure/",
                new_request_body(),
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"run-{run}",
            )
            body = response.json()
            answers.append((response.status_code, body.get("id", 0), body.get("outcome", "")))
        finally:
            connection.close()

    threads = [threading.Thread(target=ensure, args=(run,)) for run in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(status for status, _, _ in answers) == [200] * (runs - 1) + [201]
    assert len({pk for _, pk, _ in answers}) == 1
    assert sorted(outcome for _, _, outcome in answers) == ["created"] + ["request_open"] * (
        runs - 1
    )
    assert IdentityRequest.objects.count() == 1
    assert AuditEvent.objects.filter(action="identity_request.created").count() == 1
