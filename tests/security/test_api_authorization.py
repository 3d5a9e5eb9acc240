"""Every API endpoint times every kind of caller, with the status each must get, from one table.

The callers: anonymous; a requester of team A (payments, whose objects the rows use); a
requester of team B (search); an approver; an auditor; an admin; and, holding tokens of the
row's `token_user`: a token with the needed scope, one without it, an expired one and a revoked
one. A route under /api/v1/ without a row here fails `test_every_api_route_has_a_row`; the web
UI's routes have their own matrix in test_ui_authorization.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.tokens import SCOPES
from identities.models import AuditEvent
from tests.api.conftest import new_request_body
from tests.security.routes import routes_of
from tests.security.world import SESSION_ACTORS, World, team_a, token_of, trust_rule_body
from tests.support.people import VAULT_SCOPE

pytestmark = [pytest.mark.security, pytest.mark.django_db]

TOKEN_ACTORS = ("token_with_scope", "token_without_scope", "token_expired", "token_revoked")
ACTORS = SESSION_ACTORS + TOKEN_ACTORS
SESSION_ONLY = "session-only"


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


def visible_to_team_a(**overrides: int) -> dict[str, int]:
    return {"anonymous": 401, **team_a(**overrides)}


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
    Row(
        "identity-request-ensure",
        "post",
        fixed("/api/v1/identity-requests/ensure/"),
        # Find-or-create files like a POST: requesters of the namespace's team only.
        {**everyone(403), "requester_a": 201},
        body=lambda world: new_request_body(service_account="payroll", app_name="payroll"),
        scope="request",
    ),
    Row(
        "identity-request-validate",
        "post",
        fixed("/api/v1/identity-requests/validate/"),
        # A dry run of filing: the same people as filing; it writes nothing (checked below).
        {**everyone(403), "requester_a": 200},
        body=lambda world: new_request_body(service_account="payroll", app_name="payroll"),
        scope="request",
    ),
    Row("identity-request-detail", "get", request_url("pending"), visible_to_team_a()),
    Row(
        "identity-request-cancel",
        "post",
        request_url("pending", "cancel"),
        # Only the requester's team cancels; the see-all roles may look, not act.
        visible_to_team_a(approver=403, auditor=403, admin=403),
        scope="request",
    ),
    Row(
        "identity-request-cancel",
        "post",
        request_url("failed_change", "cancel"),
        # A failed change of roles: its team, approvers and admins (may_act_for_team).
        visible_to_team_a(auditor=403),
        scope="request",
    ),
    Row(
        "identity-request-approve",
        "post",
        request_url("pending", "approve"),
        visible_to_team_a(requester_a=403, auditor=403, admin=403),
        body=lambda world: {"comment": "Scoped to one vault."},
        token_user="approver",
        scope="approve",
    ),
    Row(
        "identity-request-reject",
        "post",
        request_url("pending", "reject"),
        visible_to_team_a(requester_a=403, auditor=403, admin=403),
        body=lambda world: {"comment": "Use the shared vault."},
        token_user="approver",
        scope="approve",
    ),
    Row(
        "identity-request-send-back",
        "post",
        request_url("pending", "send-back"),
        visible_to_team_a(requester_a=403, auditor=403, admin=403),
        body=lambda world: {"comment": "Use the shared vault."},
        token_user="approver",
        scope="approve",
    ),
    # Edit and resubmit: the requester only, and only once sent back (the pending request is
    # not: 409 for its requester, 403 for everyone else who sees it).
    Row(
        "identity-request-detail",
        "put",
        request_url("pending"),
        visible_to_team_a(requester_a=409, approver=403, auditor=403, admin=403),
        body=lambda world: {"justification": "Edited."},
        scope="request",
    ),
    Row(
        "identity-request-detail",
        "patch",
        request_url("pending"),
        visible_to_team_a(requester_a=409, approver=403, auditor=403, admin=403),
        body=lambda world: {"justification": "Edited."},
        scope="request",
    ),
    Row(
        "identity-request-resubmit",
        "post",
        request_url("pending", "resubmit"),
        visible_to_team_a(requester_a=409, approver=403, auditor=403, admin=403),
        scope="request",
    ),
    Row(
        "identity-request-retry",
        "post",
        request_url("failed", "retry"),
        visible_to_team_a(auditor=403),
        scope="request",
    ),
    Row("identity-request-audit", "get", request_url("ready", "audit"), visible_to_team_a()),
    Row("identity-request-steps", "get", request_url("ready", "steps"), visible_to_team_a()),
    Row(
        "identity-request-manifests", "get", request_url("ready", "manifests"), visible_to_team_a()
    ),
    Row("identity-request-handover", "get", request_url("ready", "handover"), visible_to_team_a()),
    Row(
        "identity-request-verify",
        "post",
        request_url("ready", "verify"),
        visible_to_team_a(requester_a=202, approver=202, auditor=403, admin=202),
        scope="request",
    ),
    Row(
        "identity-request-verifications",
        "get",
        request_url("ready", "verifications"),
        visible_to_team_a(),
    ),
    Row("identity-list", "get", fixed("/api/v1/identities/"), everyone(200)),
    Row(
        "identity-detail",
        "get",
        lambda world: f"/api/v1/identities/{world.identity.pk}/",
        visible_to_team_a(),
    ),
    Row(
        "identity-decommission",
        "post",
        lambda world: f"/api/v1/identities/{world.identity.pk}/decommission/",
        # Decommissioning is filed like any request: by the team's requesters.
        visible_to_team_a(requester_a=201, approver=403, auditor=403, admin=403),
        body=lambda world: {"justification": "Ledger moved to the new platform."},
        scope="request",
    ),
    Row(
        "identity-changes",
        "post",
        lambda world: f"/api/v1/identities/{world.identity.pk}/changes/",
        # A change of roles is filed like any request: by the team's requesters.
        visible_to_team_a(requester_a=201, approver=403, auditor=403, admin=403),
        body=lambda world: {
            "remove": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}],
            "justification": "The vault is retired.",
        },
        scope="request",
    ),
    Row(
        "identity-repair",
        "post",
        lambda world: f"/api/v1/identities/{world.identity.pk}/repair/",
        visible_to_team_a(requester_a=202, approver=202, auditor=403, admin=202),
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
    Row("resource-list", "get", fixed("/api/v1/resources/"), everyone(200)),  # own teams only
    Row(
        "resource-list",
        "get",
        fixed("/api/v1/resources/?team=payments"),
        visible_to_team_a(auditor=404),  # auditors read records, they do not act for teams
    ),
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
    Row("access-review-list", "get", fixed("/api/v1/access-reviews/"), everyone(200)),
    Row(
        "access-review-list",
        "post",
        fixed("/api/v1/access-reviews/"),
        # Only security opens a campaign.
        {**everyone(403), "approver": 201},
        body=lambda world: {"name": "Q4", "due_at": "2099-01-01T00:00:00Z"},
        token_user="approver",
        scope="approve",
    ),
    Row(
        "access-review-detail",
        "get",
        lambda world: f"/api/v1/access-reviews/{world.campaign.pk}/",
        visible_to_team_a(),
    ),
    Row(
        "access-review-close",
        "post",
        lambda world: f"/api/v1/access-reviews/{world.campaign.pk}/close/",
        visible_to_team_a(requester_a=403, auditor=403, admin=403),
        token_user="approver",
        scope="approve",
    ),
    Row(
        "access-review-items",
        "get",
        lambda world: f"/api/v1/access-reviews/{world.campaign.pk}/items/",
        visible_to_team_a(),
    ),
    Row(
        "access-review-evidence",
        "get",
        lambda world: f"/api/v1/access-reviews/{world.campaign.pk}/evidence/",
        visible_to_team_a(),
    ),
    Row(
        "access-review-item-attest",
        "post",
        lambda world: f"/api/v1/access-reviews/items/{world.review_item.pk}/attest/",
        # The owning team attests, security may too; auditors and admins only look.
        visible_to_team_a(auditor=403, admin=403),
        body=lambda world: {"decision": "keep"},
        scope="request",
    ),
    Row("ownership-transfer-list", "get", fixed("/api/v1/ownership-transfers/"), everyone(200)),
    Row(
        "ownership-transfer-list",
        "post",
        fixed("/api/v1/ownership-transfers/"),
        visible_to_team_a(requester_a=201, approver=403, auditor=403, admin=403),
        body=lambda world: {
            "identity": world.identity.pk,
            "to_team": "search",
            "justification": "Search runs it now.",
        },
        scope="request",
    ),
    Row(
        "ownership-transfer-detail",
        "get",
        lambda world: f"/api/v1/ownership-transfers/{world.transfer.pk}/",
        everyone(200),  # both teams see it
    ),
    Row(
        "ownership-transfer-consent",
        "post",
        lambda world: f"/api/v1/ownership-transfers/{world.transfer.pk}/consent/",
        {**everyone(403), "requester_b": 200},
        token_user="requester_b",
        scope="request",
    ),
    Row(
        "ownership-transfer-approve",
        "post",
        lambda world: f"/api/v1/ownership-transfers/{world.consented_transfer.pk}/approve/",
        {**everyone(403), "approver": 200},
        token_user="approver",
        scope="approve",
    ),
    Row(
        "ownership-transfer-reject",
        "post",
        lambda world: f"/api/v1/ownership-transfers/{world.transfer.pk}/reject/",
        {**everyone(403), "requester_b": 200, "approver": 200},
        body=lambda world: {"comment": "Not ours."},
        token_user="requester_b",
        scope="request",
    ),
    Row(
        "ownership-transfer-cancel",
        "post",
        lambda world: f"/api/v1/ownership-transfers/{world.transfer.pk}/cancel/",
        {**everyone(403), "requester_a": 200},
        scope="request",
    ),
    Row("trust-rule-list", "get", fixed("/api/v1/trust-rules/"), everyone(200)),
    Row(
        "trust-rule-list",
        "post",
        fixed("/api/v1/trust-rules/"),
        # Team A's requesters and admins register team A's rules.
        {**everyone(403), "requester_a": 201, "admin": 201},
        body=lambda world: {"team": "payments", **trust_rule_body()},
        scope=SESSION_ONLY,
    ),
    Row(
        "trust-rule-disable",
        "post",
        lambda world: f"/api/v1/trust-rules/{world.trust_rule.pk}/disable/",
        visible_to_team_a(approver=403, auditor=403),
        scope=SESSION_ONLY,
    ),
    Row("service-token-list", "get", fixed("/api/v1/service-tokens/"), everyone(200)),
    Row(
        "service-token-list",
        "post",
        fixed("/api/v1/service-tokens/"),
        {**everyone(403), "requester_a": 201, "admin": 201},
        body=lambda world: {
            "team": "payments",
            "service_principal": "deploy",
            "name": "nightly",
            "scopes": ["read"],
        },
        scope=SESSION_ONLY,
    ),
    Row(
        "service-token-revoke",
        "post",
        lambda world: f"/api/v1/service-tokens/{world.service_token.pk}/revoke/",
        visible_to_team_a(approver=403, auditor=403),
        scope=SESSION_ONLY,
    ),
    # Webhooks: a team's endpoints are its members' (and admins'); anyone else gets the 404 of a
    # missing one. Writes are for sessions only.
    Row("webhook-list", "get", fixed("/api/v1/webhooks/"), everyone(200)),
    Row(
        "webhook-list",
        "post",
        fixed("/api/v1/webhooks/"),
        {**everyone(403), "requester_a": 201, "admin": 201},
        body=lambda world: {
            "team": "payments",
            "url": "https://hooks.example.com/new",
            "events": ["request_filed"],
        },
        scope=SESSION_ONLY,
    ),
    Row(
        "webhook-detail",
        "get",
        lambda world: f"/api/v1/webhooks/{world.own_webhook.pk}/",
        {**everyone(404), "requester_a": 200, "admin": 200},
    ),
    Row(
        "webhook-detail",
        "patch",
        lambda world: f"/api/v1/webhooks/{world.own_webhook.pk}/",
        {**everyone(404), "requester_a": 200, "admin": 200},
        body=lambda world: {"description": "Deploy bot"},
        scope=SESSION_ONLY,
    ),
    Row(
        "webhook-detail",
        "delete",
        lambda world: f"/api/v1/webhooks/{world.own_webhook.pk}/",
        {**everyone(404), "requester_a": 200, "admin": 200},
        scope=SESSION_ONLY,
    ),
    Row(
        "webhook-rotate-secret",
        "post",
        lambda world: f"/api/v1/webhooks/{world.own_webhook.pk}/rotate-secret/",
        {**everyone(404), "requester_a": 200, "admin": 200},
        scope=SESSION_ONLY,
    ),
    Row(
        "webhook-deliveries",
        "get",
        lambda world: f"/api/v1/webhooks/{world.own_webhook.pk}/deliveries/",
        {**everyone(404), "requester_a": 200, "admin": 200},
    ),
    Row(
        "webhook-redeliver",
        "post",
        lambda world: (
            f"/api/v1/webhooks/{world.own_webhook.pk}/deliveries/"
            f"{world.own_webhook_delivery.pk}/redeliver/"
        ),
        {**everyone(404), "requester_a": 202, "admin": 202},
        scope=SESSION_ONLY,
    ),
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
    audit_rows = AuditEvent.objects.count()

    response = getattr(client, row.method)(path, body, format="json", **row.headers)

    expected = row.expected(actor)
    assert response.status_code == expected, (
        f"{actor} {row.method.upper()} {path}: {response.status_code}, expected {expected}: "
        f"{getattr(response, 'content', b'')[:300]!r}"
    )
    if expected >= 400:
        assert response["Content-Type"] == "application/problem+json"
        assert AuditEvent.objects.count() == audit_rows, "a refused call changed something"


def api_routes() -> set[tuple[str, str]]:
    """(route name, method) of every operation under /api/v1/, from the URL resolver."""
    return {
        (route.name.removeprefix("api:"), method)
        for route in routes_of("api")
        # The catch-all that answers 404 problems is not an endpoint.
        if route.name != "api:not-found"
        for method in ("get", "post", "put", "patch", "delete")
        if hasattr(route.callback.cls, method)
    }


def test_every_api_route_has_a_row() -> None:
    routes = api_routes()
    rows = {(row.name, row.method) for row in ROWS}
    assert len(routes) > 20, "the resolver walk found the API"
    assert sorted(routes - rows) == [], "routes without a row in the authorization matrix"
    assert sorted(rows - routes) == [], "rows for routes that no longer exist"
