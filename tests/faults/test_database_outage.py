"""PostgreSQL going away mid-request: the API answers 503, and nothing is half-written.

A real gunicorn process serves the portal with its DATABASE_URL pointing at a TCP proxy in front
of PostgreSQL. The proxy cuts the connection the moment the server sends a chosen statement (the
request row, its roles, its audit row, the COMMIT), or refuses all connections (the database is
down). The test then reads the database directly, not through the proxy.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import Client

from accounts.tokens import api_token_create
from api.problems import TYPE_PREFIX
from identities.audit import audit_verify_chain
from identities.models import (
    Approval,
    AuditEvent,
    FederatedCredential,
    Identity,
    IdentityRequest,
    RequestedRole,
    RequestStatus,
    RoleAssignment,
)
from tests.support.people import STORAGE_SCOPE, VAULT_SCOPE
from tests.support.services import (
    ManagedProcess,
    child_env,
    free_port,
    postgres_or_missing,
    wait_until,
)
from tests.support.tcp_proxy import TcpProxy, postgres_address

# serialized_rollback: the flush after each test then skips post_migrate, so the tests that
# restore the migrated rows (content types, groups, the catalog) after these still can.
pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

BODY = {
    "app_name": "checkout",
    "team": "payments",
    "cluster": "aks-test",
    "namespace": "payments",
    "service_account": "checkout",
    "roles": [
        {"role": "Key Vault Secrets User", "scope": VAULT_SCOPE},
        {"role": "Storage Blob Data Reader", "scope": STORAGE_SCOPE},
    ],
    "tags": {"costCentre": "cc-4711", "environment": "dev"},
    "justification": "Checkout reads its payment provider secrets from Key Vault.",
}


class Portal:
    """The gunicorn process and how to call it."""

    def __init__(self, url: str, process: ManagedProcess, proxy: TcpProxy) -> None:
        self.url, self.process, self.proxy = url, process, proxy

    def call(self, method: str, path: str, token: str, body: Any = None) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )


@pytest.fixture(scope="module")
def portal(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """gunicorn on a free port for the module; each request opens its own database connection,
    through the proxy."""
    postgres_or_missing()
    from django.db import connection

    proxy = TcpProxy(postgres_address())
    folder = tmp_path_factory.mktemp("gunicorn")
    db = connection.settings_dict
    auth = db.get("USER") or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    database_url = f"postgres://{auth}@127.0.0.1:{proxy.port}/{db['NAME']}?sslmode=disable"
    port = free_port()
    process = ManagedProcess(
        name="gunicorn",
        args=[
            str(Path(sys.executable).with_name("gunicorn")),
            "portal.wsgi:application",
            f"--bind=127.0.0.1:{port}",
            "--workers=1",
            "--timeout=60",
        ],
        env=child_env(
            DATABASE_URL=database_url,
            DB_CONN_MAX_AGE="0",
            # Enqueues after approval go to a folder nobody reads.
            REDIS_URL="",
            BROKER_DIR=str(folder / "broker"),
        ),
        log_path=folder / "gunicorn.log",
    ).start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(up, timeout=60, interval=0.2), process.log_tail()
        yield Portal(url, process, proxy)
    finally:
        process.stop()
        proxy.close()


@pytest.fixture(autouse=True)
def database_reachable(portal: Portal) -> None:
    """Every test starts with the proxy forwarding."""
    portal.proxy.restore()


def assert_service_unavailable(response: requests.Response, portal: Portal) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    problem = response.json()
    assert problem["type"] == TYPE_PREFIX + "service-unavailable"
    assert problem["status"] == 503
    assert problem["title"] and problem["detail"]
    assert problem["instance"] == response.request.path_url.split("?")[0]


def test_a_connection_cut_while_filing_a_request_answers_503_and_writes_nothing(
    portal: Portal, requester: Any, cluster: Any, catalog: Any
) -> None:
    _, token = api_token_create(
        user=requester, name="ci", scopes=["read", "request"], expires_at=None
    )
    audit_before = AuditEvent.objects.count()

    # Before the request row, between the row and its roles, before its audit row, and the
    # COMMIT itself (never delivered: PostgreSQL rolls the transaction back).
    for statement in (
        b'INSERT INTO "identities_identityrequest"',
        b'INSERT INTO "identities_requestedrole"',
        b'INSERT INTO "identities_auditevent"',
        b"COMMIT",
    ):
        cuts = portal.proxy.cuts
        portal.proxy.cut_on(statement)

        response = portal.call("POST", "/api/v1/identity-requests/", token, BODY)

        assert portal.proxy.cuts == cuts + 1, f"{statement!r} was never sent"
        assert_service_unavailable(response, portal)
        assert IdentityRequest.objects.count() == 0, statement
        assert RequestedRole.objects.count() == 0, statement
        assert AuditEvent.objects.count() == audit_before, statement

    # The database is back: the same request goes through, whole.
    response = portal.call("POST", "/api/v1/identity-requests/", token, BODY)

    assert response.status_code == 201, response.text
    identity_request = IdentityRequest.objects.get()
    assert identity_request.pk == response.json()["id"]
    assert RequestedRole.objects.filter(identity_request=identity_request).count() == 2
    assert list(
        AuditEvent.objects.filter(identity_request=identity_request).values_list(
            "action", flat=True
        )
    ) == ["identity_request.created"]
    assert audit_verify_chain().ok


def test_a_connection_cut_while_approving_leaves_the_request_pending_with_nothing_provisioned(
    portal: Portal, requester: Any, approver: Any, cluster: Any, catalog: Any
) -> None:
    _, filer = api_token_create(user=requester, name="ci", scopes=["request"], expires_at=None)
    _, token = api_token_create(user=approver, name="sec", scopes=["approve"], expires_at=None)
    filed = portal.call("POST", "/api/v1/identity-requests/", filer, BODY)
    assert filed.status_code == 201, filed.text
    pk = filed.json()["id"]
    audit_before = AuditEvent.objects.count()

    # Approval writes the approval, the identity, its credential and role assignments, the
    # status change and their audit rows in one transaction: cut it at the role assignments.
    cuts = portal.proxy.cuts
    portal.proxy.cut_on(b'INSERT INTO "identities_roleassignment"')
    response = portal.call("POST", f"/api/v1/identity-requests/{pk}/approve/", token, {})

    assert portal.proxy.cuts == cuts + 1
    assert_service_unavailable(response, portal)
    assert IdentityRequest.objects.get(pk=pk).status == RequestStatus.PENDING
    for model in (Approval, Identity, FederatedCredential, RoleAssignment):
        assert not model.objects.exists(), model.__name__
    assert AuditEvent.objects.count() == audit_before

    response = portal.call("POST", f"/api/v1/identity-requests/{pk}/approve/", token, {})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == RequestStatus.APPROVED
    assert RoleAssignment.objects.count() == 2
    assert audit_verify_chain().ok


def test_with_the_database_down_the_api_and_the_web_ui_answer_503(
    portal: Portal, requester: Any, cluster: Any, catalog: Any
) -> None:
    _, token = api_token_create(user=requester, name="ci", scopes=["read"], expires_at=None)
    browser = Client()
    browser.force_login(requester)
    session = browser.cookies["sessionid"].value
    portal.proxy.refuse()

    api = portal.call("GET", "/api/v1/identity-requests/", token)
    page = requests.get(f"{portal.url}/requests/", cookies={"sessionid": session}, timeout=30)

    assert_service_unavailable(api, portal)
    assert page.status_code == 503, page.text[:500]
    assert int(page.headers["Retry-After"]) > 0
    assert page.headers["Content-Type"].startswith("text/html")
    assert "temporarily unavailable" in page.text

    portal.proxy.restore()
    assert portal.call("GET", "/api/v1/identity-requests/", token).status_code == 200
    assert (
        requests.get(f"{portal.url}/requests/", cookies={"sessionid": session}, timeout=30)
    ).status_code == 200
