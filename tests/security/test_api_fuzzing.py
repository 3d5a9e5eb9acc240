"""Schemathesis fuzzes every operation of the live API in-process (through the WSGI app, no
server) against its OpenAPI schema: no 5xx, every response conforms to the schema.

Every operation is called authenticated, with the rights to succeed: a user who requests for
team payments, approves and audits, through a token with every scope; the operations a token
may not call (minting and revoking tokens, managing trust rules and service tokens) through a
signed-in session with its CSRF token. Each operation's test then checks that at least one of
its calls got past authentication and authorization, and
`test_every_operation_of_the_schema_is_fuzzed` that no operation lacks a test. Neither depends
on another test having run first (nor on the same xdist worker).

Budget: MAX_EXAMPLES generated cases per operation (26 operations, about 160 calls), plus the
schema's own examples; derandomized so a run is repeatable. About 20 s on a 2-core machine.
Raise MAX_EXAMPLES locally (e.g. 200) for a deeper run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from identities import roles
from tests.api.conftest import approve, make_ready

pytestmark = [pytest.mark.security, pytest.mark.django_db]

MAX_EXAMPLES = 6
# Operations a token may not call: the fuzzer uses a signed-in session (and CSRF) for these.
SESSION_ONLY = {
    ("POST", "/api/v1/tokens/"),
    ("POST", "/api/v1/tokens/{id}/revoke/"),
    ("POST", "/api/v1/trust-rules/"),
    ("POST", "/api/v1/trust-rules/{id}/disable/"),
    ("POST", "/api/v1/service-tokens/"),
    ("POST", "/api/v1/service-tokens/{id}/revoke/"),
    # Webhook endpoints are managed from a signed-in session only (their secrets are shown once).
    ("POST", "/api/v1/webhooks/"),
    ("PATCH", "/api/v1/webhooks/{id}/"),
    ("DELETE", "/api/v1/webhooks/{id}/"),
    ("POST", "/api/v1/webhooks/{id}/rotate-secret/"),
    ("POST", "/api/v1/webhooks/{id}/deliveries/{delivery_pk}/redeliver/"),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# (method, path template) -> the statuses the fuzzer got, for the coverage test at the end.
STATUSES: dict[tuple[str, str], list[int]] = defaultdict(list)


@pytest.fixture
def in_process_requests() -> Iterator[None]:
    """Let WSGI calls run inside the test's transaction, as Django's test client does: the
    request signals would otherwise close the connection that holds it."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_user(requester: Any, approver: Any, auditor: Any, pending_request: Any, team: Any) -> Any:
    """A user who requests on team payments, approves and audits, with a ready request."""
    make_ready(approve(pending_request, approver))
    approver.groups.add(*requester.groups.all(), *auditor.groups.all())
    team.memberships.create(user=approver)
    roles.forget_roles(approver)
    return approver


@pytest.fixture
def credentials(fuzz_user: Any, make_token: Any) -> dict[str, dict[str, Any]]:
    """What a token call sends (a header), and what a session call sends (the session and CSRF
    cookies, and the CSRF header)."""
    browser = Client()
    browser.force_login(fuzz_user)
    csrf = _get_new_csrf_string()
    token = make_token(fuzz_user, ["read", "request", "approve"])
    return {
        "token": {"headers": {"Authorization": f"Bearer {token}"}},
        "session": {
            "headers": {"X-CSRFToken": csrf},
            "cookies": {"sessionid": browser.cookies["sessionid"].value, "csrftoken": csrf},
        },
    }


def _live_schema() -> Any:
    """The schema the running app serves, fetched through its WSGI interface (no server)."""
    from portal.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/", application)


schema = _live_schema()


@pytest.fixture
def reached_past_authorization(request: pytest.FixtureRequest) -> Iterator[None]:
    """After an operation's test: at least one of its calls was neither 401 nor 403 (a fuzzer
    that only ever met the door would prove nothing about the operation behind it)."""
    yield
    label = getattr(request.node, "operation_label", "")
    method, _, path = label.partition(" ")
    statuses = STATUSES[method, path]
    assert statuses, f"{label}: the fuzzer never called it"
    assert not all(status in (401, 403) for status in statuses), (
        f"{label}: every call was refused ({sorted(set(statuses))}): never got past authorization"
    )


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_live_api_conforms_to_its_schema(
    case: Any,
    credentials: dict[str, dict[str, Any]],
    in_process_requests: None,
    reached_past_authorization: None,
) -> None:
    # The case's method may differ from its operation's: Schemathesis also tries the others.
    operation = (case.operation.method.upper(), case.operation.path)

    response = case.call(**credentials["session" if operation in SESSION_ONLY else "token"])
    if case.method.upper() == operation[0]:
        STATUSES[operation].append(response.status_code)

    case.validate_response(response, checks=CHECKS)


def test_every_operation_of_the_schema_is_fuzzed(request: pytest.FixtureRequest) -> None:
    """Every operation the schema documents has its fuzz test in this session's collection."""
    operations = {
        f"{operation.method.upper()} {operation.path}"
        for result in schema.get_all_operations()
        for operation in [result.ok()]
    }
    assert len(operations) >= 26
    assert {label.split()[0] for label in operations} >= {"GET", "POST"}
    fuzzed = {
        label
        for item in request.session.items
        if (label := getattr(item, "operation_label", None)) is not None
    }
    if not fuzzed:
        pytest.skip("the fuzz tests were not selected in this run (-k, a node id)")
    assert sorted(operations - fuzzed) == [], "operations without a fuzz test"
