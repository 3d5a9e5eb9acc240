"""Every web UI route times every kind of caller, with the status each must get, from one table.

Generated from Django's URL resolver: every pattern outside /api/v1/ and /admin/ (the API has
its matrix in test_api_authorization.py) needs a row for each method it accepts, or
`test_every_ui_route_has_a_row_for_each_method_it_accepts` fails. Object-level rules: another
team's request or identity is a 404 exactly like a missing one; approver-only pages are 403 for
requesters; anonymous callers are sent to the sign-in page. A refused call changes nothing (no
audit row); an allowed state-changing call does (one at least).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from identities.models import AuditEvent, IdentityRequest
from tests.security.routes import accepted_methods, routes_of
from tests.security.world import SESSION_ACTORS, TEAM_A_APPS, World, team_a, trust_rule_body
from tests.support.people import PASSWORD, VAULT_SCOPE

pytestmark = [pytest.mark.security, pytest.mark.django_db]

SIGN_IN = "sign-in"  # anonymous: 302 to the sign-in page, with `next` back here


@dataclass(frozen=True)
class Row:
    """One route and method: the URL (built from the world), the form data, and the status per
    session actor. `writes`: an allowed call records something on the audit trail."""

    name: str
    method: str
    url: Callable[[World], str]
    expect: dict[str, int | str]
    data: Callable[[World], dict[str, Any]] | None = None
    writes: bool = False

    def expected(self, actor: str) -> int | str:
        return self.expect[actor]


def everyone(status: int, *, anonymous: int | str = SIGN_IN) -> dict[str, int | str]:
    return {"anonymous": anonymous, **{actor: status for actor in SESSION_ACTORS[1:]}}


def own_team(**overrides: int) -> dict[str, int | str]:
    return {"anonymous": SIGN_IN, **team_a(**overrides)}


def only(statuses: dict[str, int], otherwise: int) -> dict[str, int | str]:
    """`otherwise` for every signed-in actor not named in `statuses`."""
    return {
        "anonymous": SIGN_IN,
        **{actor: statuses.get(actor, otherwise) for actor in SESSION_ACTORS[1:]},
    }


def url(name: str, attribute: str = "") -> Callable[[World], str]:
    """reverse(name), with the pk of the world's `attribute` ("pending", "identity", ...)."""

    def build(world: World) -> str:
        return reverse(name, args=[getattr(world, attribute).pk] if attribute else [])

    return build


def new_request_form(world: World) -> dict[str, Any]:
    return {
        "team": "payments",
        "cluster": "aks-test",
        "namespace": "payments",
        "service_account": "payroll",
        "app_name": "payroll",
        "roles-TOTAL_FORMS": "1",
        "roles-INITIAL_FORMS": "0",
        "roles-MIN_NUM_FORMS": "1",
        "roles-MAX_NUM_FORMS": "20",
        "roles-0-role": "Key Vault Secrets User",
        "roles-0-scope": VAULT_SCOPE,
        "tags": "costCentre=cc-4711",
        "justification": "Payroll reads its bank credentials from Key Vault.",
    }


# Team A's requester may act on team A's objects; the see-everything roles may only look, except
# where the services say otherwise (approvers decide; approvers and admins retry, verify, repair).
ACTING = {"approver": 302, "admin": 302}

ROWS: list[Row] = [
    Row("healthz", "get", url("healthz"), everyone(200, anonymous=200)),
    Row("readyz", "get", url("readyz"), everyone(200, anonymous=200)),
    # No worker heartbeat in this world: stale, for everyone alike.
    Row("healthz-workers", "get", url("healthz-workers"), everyone(503, anonymous=503)),
    # No METRICS_TOKEN here, so the endpoint is off; with one, a session is still a 401
    # (tests/foundation/test_metrics.py): only the scraper's bearer token opens it.
    Row("metrics", "get", url("metrics"), everyone(404, anonymous=404)),
    Row("api-schema", "get", url("api-schema"), everyone(200, anonymous=200)),
    Row("api-docs", "get", url("api-docs"), everyone(200, anonymous=200)),
    Row("login", "get", url("login"), everyone(200, anonymous=200)),
    Row(
        "login",
        "post",
        url("login"),
        everyone(200, anonymous=200),  # the form again, saying the password is wrong
        data=lambda world: {"username": "alice", "password": "not-" + PASSWORD},
    ),
    Row("logout", "post", url("logout"), everyone(302, anonymous=302)),
    # Single sign-on is off unless configured (tests/ui/test_sso.py covers it switched on).
    Row("sso-start", "get", url("sso-start"), everyone(404, anonymous=404)),
    Row("sso-callback", "get", url("sso-callback"), everyone(404, anonymous=404)),
    Row("home", "get", url("home"), everyone(200)),
    Row("request_list", "get", url("request_list"), everyone(200)),
    Row(
        "request_new",
        "get",
        url("request_new"),
        only({"requester_a": 200, "requester_b": 200}, 403),
    ),
    Row(
        "request_new",
        "post",
        url("request_new"),
        # Team B's requester may file, but not for team A: the policy refuses (400, the form).
        only({"requester_a": 302, "requester_b": 400}, 403),
        data=new_request_form,
        writes=True,
    ),
    Row(
        "request_check",
        "post",
        url("request_check"),
        only({"requester_a": 200, "requester_b": 200}, 403),
        data=new_request_form,
    ),
    # Everyone signed in sees their own teams' resources (none for a team-less role); naming
    # another team is a 404 (tests/ui/test_resource_picker.py).
    Row("resource_search", "get", url("resource_search"), everyone(200)),
    Row("request_detail", "get", url("request_detail", "pending"), own_team()),
    Row("request_progress", "get", url("request_progress", "pending"), own_team()),
    Row("request_manifests", "get", url("request_manifests", "ready"), own_team()),
    Row(
        "request_cancel",
        "post",
        url("request_cancel", "pending"),
        own_team(requester_a=302, approver=403, auditor=403, admin=403),
        writes=True,
    ),
    Row(
        "request_cancel",
        "post",
        url("request_cancel", "failed_change"),
        # A failed change of roles: its team, approvers and admins (may_act_for_team).
        own_team(requester_a=302, auditor=403, **ACTING),
        writes=True,
    ),
    Row(
        "request_retry",
        "post",
        url("request_retry", "failed"),
        own_team(requester_a=302, auditor=403, **ACTING),
        writes=True,
    ),
    Row(
        "request_verify",
        "post",
        url("request_verify", "ready"),
        own_team(requester_a=302, auditor=403, **ACTING),
        writes=True,
    ),
    Row(
        "request_approve",
        "post",
        url("request_approve", "pending"),
        own_team(requester_a=403, approver=302, auditor=403, admin=403),
        data=lambda world: {"comment": "Scoped to one vault."},
        writes=True,
    ),
    Row(
        "request_reject",
        "post",
        url("request_reject", "pending"),
        own_team(requester_a=403, approver=302, auditor=403, admin=403),
        data=lambda world: {"comment": "Use the shared vault."},
        writes=True,
    ),
    Row(
        "request_send_back",
        "post",
        url("request_send_back", "pending"),
        own_team(requester_a=403, approver=302, auditor=403, admin=403),
        data=lambda world: {"comment": "Use the shared vault."},
        writes=True,
    ),
    # The requester's resubmission of a request sent back; the world's pending request is not,
    # so its requester is told so (302 back, nothing written) and everyone else is refused.
    Row(
        "request_resubmit",
        "post",
        url("request_resubmit", "pending"),
        own_team(requester_a=302, approver=403, auditor=403, admin=403),
        data=lambda world: {
            "roles-TOTAL_FORMS": "1",
            "roles-INITIAL_FORMS": "0",
            "roles-0-role": "Key Vault Secrets User",
            "roles-0-scope": VAULT_SCOPE,
            "justification": "Edited.",
        },
    ),
    # Team members have a queue too: other teams' requests their team must approve as owner.
    Row(
        "approval_queue",
        "get",
        url("approval_queue"),
        only({"approver": 200, "requester_a": 200, "requester_b": 200}, 403),
    ),
    Row("audit_log", "get", url("audit_log"), everyone(200)),
    Row("audit_export", "get", url("audit_export"), everyone(200)),
    Row(
        "audit_chain_verify",
        "post",
        url("audit_chain_verify"),
        # Everyone who sees every row (the chain spans them all) may ask for a full walk.
        only({"approver": 302, "auditor": 302, "admin": 302}, 403),
        writes=True,
    ),
    Row(
        "audit_chain_progress",
        "get",
        url("audit_chain_progress"),
        only({"approver": 200, "auditor": 200, "admin": 200}, 403),
    ),
    Row("identity_list", "get", url("identity_list"), everyone(200)),
    Row("identity_detail", "get", url("identity_detail", "identity"), own_team()),
    Row(
        "identity_repair",
        "post",
        url("identity_repair", "identity"),
        own_team(requester_a=302, auditor=403, **ACTING),
        writes=True,
    ),
    Row(
        "identity_decommission",
        "post",
        url("identity_decommission", "identity"),
        # Filed like any request: by the team's requesters.
        own_team(requester_a=302, approver=403, auditor=403, admin=403),
        data=lambda world: {"justification": "Moved to the new platform."},
        writes=True,
    ),
    Row(
        "identity_change",
        "get",
        url("identity_change", "identity"),
        own_team(requester_a=200, approver=403, auditor=403, admin=403),
    ),
    Row(
        "identity_change",
        "post",
        url("identity_change", "identity"),
        # Filed like any request: by the team's requesters. Clearing every row removes all roles.
        own_team(requester_a=302, approver=403, auditor=403, admin=403),
        data=lambda world: {
            "roles-TOTAL_FORMS": "1",
            "roles-INITIAL_FORMS": "0",
            "roles-0-role": "",
            "roles-0-scope": "",
            "justification": "The app is paused.",
        },
        writes=True,
    ),
    Row(
        "identity_add_service_account",
        "post",
        url("identity_add_service_account", "identity"),
        own_team(requester_a=302, approver=403, auditor=403, admin=403),
        data=lambda world: {
            "namespace": "payments-jobs",
            "service_account": "nightly",
            "justification": "The nightly job needs the same vault.",
        },
        writes=True,
    ),
    Row("review_list", "get", url("review_list"), everyone(200)),
    Row(
        "review_list",
        "post",
        url("review_list"),
        # Only security opens an access review.
        only({"approver": 302}, 403),
        data=lambda world: {"name": "Q4", "due_at": "2099-01-01T00:00", "grace_days": "0"},
        writes=True,
    ),
    Row("review_detail", "get", url("review_detail", "campaign"), own_team()),
    Row("review_evidence", "get", url("review_evidence", "campaign"), own_team()),
    Row(
        "review_close",
        "post",
        url("review_close", "campaign"),
        own_team(requester_a=403, approver=302, auditor=403, admin=403),
        writes=True,
    ),
    Row(
        "review_attest",
        "post",
        url("review_attest", "review_item"),
        # The owning team attests, security may too; auditors and admins only look.
        own_team(requester_a=302, approver=302, auditor=403, admin=403),
        data=lambda world: {"decision": "keep"},
        writes=True,
    ),
    Row("transfer_list", "get", url("transfer_list"), everyone(200)),
    Row(
        "identity_transfer",
        "post",
        url("identity_transfer", "identity"),
        own_team(requester_a=302, approver=403, auditor=403, admin=403),
        data=lambda world: {
            "transfer-to_team": "search",
            "transfer-justification": "Search runs it now.",
        },
        writes=True,
    ),
    Row(
        "transfer_consent",
        "post",
        url("transfer_consent", "transfer"),
        only({"requester_b": 302}, 403),
        writes=True,
    ),
    Row(
        "transfer_approve",
        "post",
        url("transfer_approve", "consented_transfer"),
        only({"approver": 302}, 403),
        writes=True,
    ),
    Row(
        "transfer_reject",
        "post",
        url("transfer_reject", "transfer"),
        only({"requester_b": 302, "approver": 302}, 403),
        data=lambda world: {"comment": "Not ours."},
        writes=True,
    ),
    Row(
        "transfer_cancel",
        "post",
        url("transfer_cancel", "transfer"),
        only({"requester_a": 302}, 403),
        writes=True,
    ),
    Row("api_tokens", "get", url("api_tokens"), everyone(200)),
    Row(
        "api_tokens",
        "post",
        url("api_tokens"),
        everyone(200),  # the page again, with the new token shown once
        data=lambda world: {"name": "deploy", "scopes": ["read"], "lifetime": "30d"},
        writes=True,
    ),
    Row(
        "api_token_revoke",
        "post",
        url("api_token_revoke", "own_token"),
        # Someone else's token is as unknown as a missing one.
        only({"requester_a": 302}, 404),
        writes=True,
    ),
    Row("pipelines", "get", url("pipelines"), everyone(200)),
    Row(
        "trust_rule_new",
        "post",
        url("trust_rule_new"),
        # Team A's requesters and admins register its rules; nobody else may name team A.
        only({"requester_a": 302, "admin": 302}, 403),
        data=lambda world: {
            "team": "payments",
            **trust_rule_body(),
            "claims": "repository=contoso/payments",
        },
        writes=True,
    ),
    Row(
        "trust_rule_disable",
        "post",
        url("trust_rule_disable", "trust_rule"),
        own_team(requester_a=302, approver=403, auditor=403, admin=302),
        writes=True,
    ),
    Row(
        "service_token_new",
        "post",
        url("service_token_new"),
        only({"requester_a": 200, "admin": 200}, 403),
        data=lambda world: {
            "team": "payments",
            "service_principal": "nightly",
            "name": "nightly",
            "scopes": ["read"],
            "lifetime": "30d",
        },
        writes=True,
    ),
    Row(
        "service_token_revoke",
        "post",
        url("service_token_revoke", "service_token"),
        own_team(requester_a=302, approver=403, auditor=403, admin=302),
        writes=True,
    ),
    # Everyone has an inbox and preferences of their own; the views take no object from the
    # URL, and another person's notification id marks nothing (tests/ui/test_notifications.py).
    Row("notification_inbox", "get", url("notification_inbox"), everyone(200)),
    Row("notification_read", "post", url("notification_read"), everyone(302)),
    Row("notification_preferences", "get", url("notification_preferences"), everyone(200)),
    Row(
        "notification_preferences",
        "post",
        url("notification_preferences"),
        everyone(302),
        data=lambda world: {"email_events": ["request_filed"], "email_frequency": "daily"},
        writes=True,
    ),
    # Webhooks: team A's endpoint is its members' and admins'; anyone else gets the 404 of a
    # missing one. Registering for team A: its members and admins (others: the form again, 400).
    Row("webhook_list", "get", url("webhook_list"), everyone(200)),
    Row(
        "webhook_list",
        "post",
        url("webhook_list"),
        only({"requester_a": 200, "admin": 200}, 400),
        data=lambda world: {
            "team": "payments",
            "url": "https://hooks.example.com/ui",
            "events": ["request_filed"],
        },
        writes=True,
    ),
    Row(
        "webhook_detail",
        "get",
        url("webhook_detail", "own_webhook"),
        only({"requester_a": 200, "admin": 200}, 404),
    ),
    Row(
        "webhook_rotate",
        "post",
        url("webhook_rotate", "own_webhook"),
        only({"requester_a": 200, "admin": 200}, 404),
        writes=True,
    ),
    Row(
        "webhook_toggle",
        "post",
        url("webhook_toggle", "own_webhook"),
        only({"requester_a": 302, "admin": 302}, 404),
        writes=True,
    ),
    Row(
        "webhook_delete",
        "post",
        url("webhook_delete", "own_webhook"),
        only({"requester_a": 302, "admin": 302}, 404),
        writes=True,
    ),
    Row(
        "webhook_redeliver",
        "post",
        lambda world: reverse(
            "webhook_redeliver", args=[world.own_webhook.pk, world.own_webhook_delivery.pk]
        ),
        only({"requester_a": 302, "admin": 302}, 404),
        writes=True,
    ),
]


def client_as(world: World, actor: str) -> Client:
    client = Client()
    if actor != "anonymous":
        client.force_login(world.users[actor])
    return client


@pytest.mark.parametrize("actor", SESSION_ACTORS)
@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row.method.upper()} {row.name}")
def test_each_caller_gets_the_status_of_the_table(
    row: Row, actor: str, request: pytest.FixtureRequest
) -> None:
    world = World(request.getfixturevalue)
    target = row.url(world)
    data = row.data(world) if row.data else {}
    client = client_as(world, actor)
    audit_rows = AuditEvent.objects.count()

    response = getattr(client, row.method)(target, data)

    expected = row.expected(actor)
    where = f"{actor} {row.method.upper()} {target}"
    if expected == SIGN_IN:
        assert response.status_code == 302, f"{where}: {response.status_code}"
        assert response["Location"].startswith(f"{reverse('login')}?next="), where
    else:
        assert response.status_code == expected, (
            f"{where}: {response.status_code}, expected {expected}: {response.content[:300]!r}"
        )
    changed = AuditEvent.objects.count() - audit_rows
    if expected == SIGN_IN or (isinstance(expected, int) and expected >= 400):
        assert changed == 0, f"{where} was refused but changed something"
    elif row.writes:
        assert changed > 0, f"{where} answered {expected} but did nothing"


def test_every_ui_route_has_a_row_for_each_method_it_accepts(admin_user: Any) -> None:
    """Generated from the resolver: which of GET and POST each route accepts is asked of the
    route itself (405 or not), so a new route, or a new method on a route, needs a row."""
    routes = routes_of("ui")
    accepted = {
        (route.name, method) for route in routes for method in accepted_methods(route, admin_user)
    }
    rows = {(row.name, row.method) for row in ROWS}

    assert len(routes) > 25, "the resolver walk found the web UI"
    assert sorted(accepted - rows) == [], "UI routes without a row in the authorization matrix"
    assert sorted(rows - accepted) == [], "rows for routes or methods that no longer exist"


# --- what the status codes cannot show ----------------------------------------------------------


def test_the_404_page_does_not_tell_missing_from_invisible(
    client_for: Any, outsider: Any, pending_request: IdentityRequest
) -> None:
    client = client_for(outsider)

    invisible = client.get(reverse("request_detail", args=[pending_request.pk]))
    missing = client.get(reverse("request_detail", args=[pending_request.pk + 1000]))

    assert invisible.status_code == missing.status_code == 404
    assert invisible.context["message"].replace(str(pending_request.pk), "N") == missing.context[
        "message"
    ].replace(str(pending_request.pk + 1000), "N")


@pytest.mark.parametrize(
    "route", ["home", "request_list", "identity_list", "audit_log", "audit_export"]
)
def test_pages_listing_many_objects_show_none_of_another_teams(
    route: str, request: pytest.FixtureRequest
) -> None:
    world = World(request.getfixturevalue)
    for identity_request in (world.pending, world.ready, world.failed):
        assert identity_request.app_name in TEAM_A_APPS
    seen_by_a = client_as(world, "requester_a").get(reverse(route))
    seen_by_b = client_as(world, "requester_b").get(reverse(route))

    def body(response: Any) -> str:
        if response.streaming:
            return b"".join(response.streaming_content).decode()
        return str(response.content.decode())

    shown_to_a = [app for app in TEAM_A_APPS if app in body(seen_by_a)]
    assert shown_to_a, f"{route} shows team A none of its own objects: the check is vacuous"
    assert [app for app in TEAM_A_APPS if app in body(seen_by_b)] == []


def test_the_audit_chain_status_is_only_for_those_who_see_everything(
    client_for: Any, outsider: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(outsider).get(reverse("audit_log"))

    assert response.context["rows"] == []
    assert response.context["chain"] is None  # the chain spans every team


def test_the_approval_queue_says_why_it_is_refused(
    client_for: Any, requester: Any, auditor: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(auditor).get(reverse("approval_queue"))
    assert response.status_code == 403
    assert b"Only approvers and team members" in response.content
    # A requester's queue holds only what their team must approve as an owner: not their own.
    mine = client_for(requester).get(reverse("approval_queue"))
    assert mine.status_code == 200
    assert mine.context["items"] == []


def test_a_teammate_who_can_see_a_request_still_cannot_approve_it(
    client_for: Any, teammate: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(teammate).post(reverse("request_approve", args=[pending_request.pk]))

    assert response.status_code == 403
    pending_request.refresh_from_db()
    assert pending_request.status == "pending"


def test_json_endpoints_answer_refusals_in_json(
    client_for: Any, outsider: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(outsider).get(
        reverse("request_progress", args=[pending_request.pk]), HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 404
    assert response.json() == {"error": f"Identity request {pending_request.pk} was not found."}


def test_the_admin_is_for_staff_only(client_for: Any, requester: Any, admin_user: Any) -> None:
    assert Client().get("/admin/").status_code == 302
    assert client_for(requester).get("/admin/").status_code == 302  # to the admin's sign-in
    assert client_for(admin_user).get("/admin/").status_code == 200
