"""Every API endpoint times every kind of caller, with the status each must get, from one table.

The callers: anonymous; a requester of team A (payments, whose objects the rows use); a
requester of team B (search); an approver; an auditor; an admin; and, holding tokens of the
row's `token_user`: a token with the needed scope, one without it, an expired one and a revoked
one. A route under /api/v1/ without a row here fails `test_every_api_route_has_a_row`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any

import pytest
from django.urls import URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from identities.models import Identity, IdentityRequest
from portal.models import ApiToken
from portal.tokens import SCOPES, token_generate, token_hash
from tests.api.conftest import approve, make_failed, make_ready, new_request_body

pytestmark = pytest.mark.django_db

SESSION_ACTORS = ("anonymous", "requester_a", "requester_b", "approver", "auditor", "admin")
TOKEN_ACTORS = ("token_with_scope", "token_without_scope", "token_expired", "token_revoked")
ACTORS = SESSION_ACTORS + TOKEN_ACTORS
SESSION_ONLY = "session-only"


class World:
    """The objects a row acts on, made on first use (each test case gets a fresh world)."""

    def __init__(self, fixture: Callable[[str], Any]) -> None:
        self.fixture = fixture
        self.users = {
            "requester_a": fixture("requester"),
            "requester_b": fixture("outsider"),
            "approver": fixture("approver"),
            "auditor": fixture("auditor"),
            "admin": fixture("admin_user"),
        }
        fixture("cluster")
        fixture("catalog")

    def _file(self, service_account: str) -> IdentityRequest:
        return self.fixture("file_request")(
            service_account=service_account, app_name=service_account
        )

    @cached_property
    def pending(self) -> IdentityRequest:
        return self._file("checkout")

    @cached_property
    def ready(self) -> IdentityRequest:
        return make_ready(approve(self._file("ledger"), self.users["approver"]))

    @cached_property
    def failed(self) -> IdentityRequest:
        return make_failed(approve(self._file("refunds"), self.users["approver"]))

    @property
    def identity(self) -> Identity:
        identity = self.ready.identity
        assert identity is not None
        return identity

    @cached_property
    def own_token(self) -> ApiToken:
        """A token of requester A (what the revoke row revokes)."""
        token_of(self.users["requester_a"], ["read"])
        return ApiToken.objects.filter(user=self.users["requester_a"]).latest("id")


def token_of(user: Any, scopes: list[str], *, expired: bool = False, revoked: bool = False) -> str:
    """A token row written directly: any scopes (as if the user's roles changed after minting)."""
    raw = token_generate()
    now = timezone.now()
    ApiToken.objects.create(
        user=user,
        name="matrix",
        prefix=raw[:12],
        hashed_secret=token_hash(raw),
        scopes=scopes,
        expires_at=now - timedelta(seconds=1) if expired else now + timedelta(days=1),
        revoked_at=now if revoked else None,
    )
    return raw


@dataclass(frozen=True)
class Row:
    """One operation: how to call it, who does it as (`token_user`), which token scope it needs
    (None: none; SESSION_ONLY: no token may), and the status per session actor."""

    name: str
    method: str
    path: Callable[[World], str]
    expect: dict[str, int]
    body: Callable[[World], Any] | None = None
    token_user: str = "requester_a"
    scope: str | None = "read"
    headers: dict[str, str] = field(default_factory=dict)

    def expected(self, actor: str) -> int:
        if actor in self.expect:
            return self.expect[actor]
        if actor in ("token_expired", "token_revoked"):
            return 401
        if self.scope == SESSION_ONLY:
            return 403
        if actor == "token_with_scope" or self.scope is None:
            return self.expect[self.token_user]
        return 403  # token_without_scope


def everyone(status: int) -> dict[str, int]:
    return {"anonymous": 401, **{actor: status for actor in SESSION_ACTORS[1:]}}


def team_a(**overrides: int) -> dict[str, int]:
    """Visible to team A and the see-everything roles; team B gets the same 404 as for nothing."""
    base = {
        "anonymous": 401,
        "requester_a": 200,
        "requester_b": 404,
        "approver": 200,
        "auditor": 200,
        "admin": 200,
    }
    return {**base, **overrides}


def request_url(attribute: str, action: str = "") -> Callable[[World], str]:
    def build(world: World) -> str:
        pk = getattr(world, attribute).pk
        return f"/api/v1/identity-requests/{pk}/{action + '/' if action else ''}"

    return build


def fixed(path: str) -> Callable[[World], str]:
    return lambda world: path


ROWS: list[Row] = [
    Row("identity-request-list", "get", fixed("/api/v1/identity-requests/"), everyone(200)),
    Row(
        "identity-request-list",
        "post",
        fixed("/api/v1/identity-requests/"),
        # Only requesters file, and only for their own team.
        {**everyone(403), "requester_a": 201},
        body=lambda world: new_request_body(service_account="payroll", app_name="payroll"),
        scope="request",
    ),
    Row("identity-request-detail", "get", request_url("pending"), team_a()),
    Row(
        "identity-request-cancel",
        "post",
        request_url("pending", "cancel"),
        # Only the requester's team cancels; the see-all roles may look, not act.
        team_a(approver=403, auditor=403, admin=403),
        scope="request",
    ),
    Row(
        "identity-request-approve",
        "post",
        request_url("pending", "approve"),
        team_a(requester_a=403, auditor=403, admin=403),
        body=lambda world: {"comment": "Scoped to one vault."},
        token_user="approver",
        scope="approve",
    ),
    Row(
        "identity-request-reject",
        "post",
        request_url("pending", "reject"),
        team_a(requester_a=403, auditor=403, admin=403),
        body=lambda world: {"comment": "Use the shared vault."},
        token_user="approver",
        scope="approve",
    ),
    Row(
        "identity-request-retry",
        "post",
        request_url("failed", "retry"),
        team_a(auditor=403),
        scope="request",
    ),
    Row("identity-request-audit", "get", request_url("ready", "audit"), team_a()),
    Row("identity-request-steps", "get", request_url("ready", "steps"), team_a()),
    Row("identity-request-manifests", "get", request_url("ready", "manifests"), team_a()),
    Row("identity-request-handover", "get", request_url("ready", "handover"), team_a()),
    Row(
        "identity-request-verify",
        "post",
        request_url("ready", "verify"),
        team_a(requester_a=202, approver=202, auditor=403, admin=202),
        scope="request",
    ),
    Row(
        "identity-request-verifications",
        "get",
        request_url("ready", "verifications"),
        team_a(),
    ),
    Row("identity-list", "get", fixed("/api/v1/identities/"), everyone(200)),
    Row(
        "identity-detail",
        "get",
        lambda world: f"/api/v1/identities/{world.identity.pk}/",
        team_a(),
    ),
    Row(
        "identity-decommission",
        "post",
        lambda world: f"/api/v1/identities/{world.identity.pk}/decommission/",
        # Decommissioning is filed like any request: by the team's requesters.
        team_a(requester_a=201, approver=403, auditor=403, admin=403),
        body=lambda world: {"justification": "Ledger moved to the new platform."},
        scope="request",
    ),
    Row(
        "identity-repair",
        "post",
        lambda world: f"/api/v1/identities/{world.identity.pk}/repair/",
        team_a(requester_a=202, approver=202, auditor=403, admin=202),
        scope="request",
    ),
    Row("cluster-list", "get", fixed("/api/v1/clusters/"), everyone(200)),
    Row(
        "cluster-namespaces",
        "get",
        fixed("/api/v1/clusters/aks-test/namespaces/"),
        everyone(200),  # team B owns a namespace there too
    ),
    Row("role-list", "get", fixed("/api/v1/roles/"), everyone(200)),
    Row(
        "audit-event-list",
        "get",
        fixed("/api/v1/audit-events/"),
        {**everyone(403), "auditor": 200, "admin": 200},
        token_user="auditor",
    ),
    Row(
        "audit-event-export",
        "get",
        fixed("/api/v1/audit-events/export/"),
        {**everyone(403), "auditor": 200, "admin": 200},
        token_user="auditor",
    ),
    Row("token-list", "get", fixed("/api/v1/tokens/"), everyone(200)),
    Row(
        "token-list",
        "post",
        fixed("/api/v1/tokens/"),
        everyone(201),
        body=lambda world: {"name": "deploy", "scopes": ["read"]},
        scope=SESSION_ONLY,
    ),
    Row(
        "token-revoke",
        "post",
        lambda world: f"/api/v1/tokens/{world.own_token.pk}/revoke/",
        # Someone else's token is as unknown as a missing one.
        {**everyone(404), "requester_a": 200},
        scope=SESSION_ONLY,
    ),
    Row("me", "get", fixed("/api/v1/me/"), everyone(200), scope=None),
]


def client_as(world: World, row: Row, actor: str) -> APIClient:
    client = APIClient()
    if actor == "anonymous":
        return client
    if actor in world.users:
        client.force_login(world.users[actor])
        return client
    user = world.users[row.token_user]
    needed = row.scope if row.scope in SCOPES else None
    if actor == "token_with_scope":
        raw = token_of(user, list(SCOPES) if needed is None else [needed])
    elif actor == "token_without_scope":
        raw = token_of(user, [s for s in SCOPES if s != needed])
    else:
        raw = token_of(
            user, list(SCOPES), expired=actor == "token_expired", revoked=actor == "token_revoked"
        )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row.method.upper()} {row.name}")
def test_each_caller_gets_the_status_of_the_table(
    row: Row, actor: str, request: pytest.FixtureRequest
) -> None:
    world = World(request.getfixturevalue)
    path = row.path(world)
    body = row.body(world) if row.body else None
    client = client_as(world, row, actor)

    response = getattr(client, row.method)(path, body, format="json", **row.headers)

    expected = row.expected(actor)
    assert response.status_code == expected, (
        f"{actor} {row.method.upper()} {path}: {response.status_code}, expected {expected}: "
        f"{getattr(response, 'content', b'')[:300]!r}"
    )
    if expected >= 400:
        assert response["Content-Type"] == "application/problem+json"


def api_route_views() -> list[tuple[str, Any]]:
    """(route name, view class) of every endpoint under /api/v1/, from the URL resolver."""
    found: list[tuple[str, Any]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            # The catch-all that answers 404 problems is not an endpoint.
            elif route.startswith("api/v1/") and pattern.name != "not-found":
                found.append((pattern.name or route, pattern.callback.cls))

    walk(get_resolver().url_patterns, "")
    return found


def api_routes() -> set[tuple[str, str]]:
    """(route name, method) of every operation under /api/v1/."""
    return {
        (name, method)
        for name, view in api_route_views()
        for method in ("get", "post", "put", "patch", "delete")
        if hasattr(view, method)
    }


def test_every_api_route_has_a_row() -> None:
    routes = api_routes()
    rows = {(row.name, row.method) for row in ROWS}
    assert len(routes) > 20, "the resolver walk found the API"
    assert sorted(routes - rows) == [], "routes without a row in the authorization matrix"
    assert sorted(rows - routes) == [], "rows for routes that no longer exist"
