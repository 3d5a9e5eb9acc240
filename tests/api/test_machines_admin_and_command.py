"""Trust rules from the admin (read-only, with an audited "disable" action) and from
`manage.py trust_rule` (list, add, disable; audited as --by)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.machines import trust_rule_create
from accounts.models import TrustRule
from identities.models import AuditEvent

pytestmark = pytest.mark.django_db

GITHUB = "https://token.actions.githubusercontent.com"


def make_rule(actor: Any, team: Any) -> TrustRule:
    return trust_rule_create(
        actor=actor,
        team=team,
        service_principal="deploy",
        name="main",
        issuer=GITHUB,
        audience="api://portal",
        subject="repo:contoso/payments:ref:refs/heads/main",
        scopes=["read"],
    )


def test_the_admin_lists_rules_and_disables_them_through_the_service(
    admin_user: Any, requester: Any, team: Any
) -> None:
    rule = make_rule(requester, team)
    client = Client()
    client.force_login(admin_user)

    assert client.get("/admin/portal/trustrule/").status_code == 200
    assert client.get("/admin/portal/serviceprincipal/").status_code == 200
    assert client.get("/admin/portal/trustrule/add/").status_code == 403
    response = client.post(
        "/admin/portal/trustrule/",
        {"action": "disable_rules", "_selected_action": [rule.pk]},
    )

    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.disabled_by == admin_user
    event = AuditEvent.objects.latest("id")
    assert (event.action, event.actor) == ("trust_rule.disabled", admin_user)


def test_the_command_adds_lists_and_disables_a_rule(requester: Any, team: Any) -> None:
    out = io.StringIO()
    call_command(
        "trust_rule",
        "add",
        "--by",
        requester.get_username(),
        "--team",
        "payments",
        "--principal",
        "deploy-pipeline",
        "--name",
        "main branch",
        "--issuer",
        GITHUB,
        "--audience",
        "api://portal",
        "--subject-pattern",
        "repo:contoso/payments:*",
        "--claim",
        "ref=refs/heads/main",
        "--scopes",
        "read,request",
        stdout=out,
    )
    rule = TrustRule.objects.get()
    assert "svc:payments/deploy-pipeline" in out.getvalue()
    assert rule.claims == {"ref": "refs/heads/main"}
    assert rule.scopes == ["read", "request"]

    listed = io.StringIO()
    call_command("trust_rule", "list", "--team", "payments", stdout=listed)
    assert "sub~repo:contoso/payments:*" in listed.getvalue()
    assert "enabled" in listed.getvalue()

    call_command(
        "trust_rule",
        "disable",
        str(rule.pk),
        "--by",
        requester.get_username(),
        stdout=io.StringIO(),
    )
    rule.refresh_from_db()
    assert not rule.is_active
    assert AuditEvent.objects.filter(action="trust_rule.disabled", actor=requester).count() == 1


def test_the_command_refuses_someone_outside_the_team_and_a_bad_rule(
    outsider: Any, requester: Any, team: Any
) -> None:
    base = [
        "trust_rule",
        "add",
        "--team",
        "payments",
        "--principal",
        "deploy",
        "--name",
        "x",
        "--issuer",
        GITHUB,
        "--audience",
        "api://portal",
    ]

    with pytest.raises(CommandError, match="Only requesters of team 'payments'"):
        call_command(*base, "--by", outsider.get_username(), "--subject", "repo:x/y:ref:main")
    with pytest.raises(CommandError, match="subject: Give a subject"):
        call_command(*base, "--by", requester.get_username())
    assert not TrustRule.objects.exists()
