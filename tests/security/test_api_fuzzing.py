"""Schemathesis fuzzes every operation of the live API in-process (through the WSGI app, no
server) against its OpenAPI schema: no 5xx, every response conforms to the schema.

Every operation is called authenticated, with the rights to succeed: a user who requests for
team payments, approves and audits, through a token with every scope; the two operations a
token may not call (minting and revoking tokens) through a signed-in session with its CSRF
token. `test_every_operation_was_fuzzed_past_authentication` then checks that each operation
was reached and that at least one of its calls got past authentication and authorization.

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

# One xdist worker runs the whole module: the coverage test reads what the fuzz tests recorded.
pytestmark = [pytest.mark.security, pytest.mark.django_db, pytest.mark.xdist_group("api-fuzzing")]

MAX_EXAMPLES = 6
# Operations a token may not call: the fuzzer uses a signed-in session (and CSRF) for these.
SESSION_ONLY = {("POST", "/api/v1/tokens/"), ("POST", "/api/v1/tokens/{id}/revoke/")}
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


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_live_api_conforms_to_its_schema(
    case: Any, credentials: dict[str, dict[str, Any]], in_process_requests: None
) -> None:
    # The case's method may differ from its operation's: Schemathesis also tries the others.
    operation = (case.operation.method.upper(), case.operation.path)

    response = case.call(**credentials["session" if operation in SESSION_ONLY else "token"])
    if case.method.upper() == operation[0]:
        STATUSES[operation].append(response.status_code)

    case.validate_response(response, checks=CHECKS)


def test_every_operation_was_fuzzed_past_authentication() -> None:
    """Runs after the fuzzing above (same module, later in the file): every operation of the
    schema was called, and at least one call of each was neither 401 nor 403."""
    operations = {
        (operation.method.upper(), operation.path)
        for result in schema.get_all_operations()
        for operation in [result.ok()]
    }
    assert len(operations) >= 26
    assert {method for method, _path in operations} >= {"GET", "POST"}

    missing = sorted(operations - set(STATUSES))
    assert missing == [], (
        "operations the fuzzer never called (run this test together with the fuzzing above)"
    )
    refused_every_time = sorted(
        f"{method} {path}: {sorted(set(STATUSES[method, path]))}"
        for method, path in operations
        if all(status in (401, 403) for status in STATUSES[method, path])
    )
    assert refused_every_time == [], "operations the fuzzer never got past authorization"
