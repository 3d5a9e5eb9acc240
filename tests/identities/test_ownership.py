"""Resource ownership: cross-team requests need the owning team's approval beside security's,
unowned scopes need an exception, protected scopes are refused outright."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from identities.audit.actions import AuditAction
from identities.errors import PermissionDeniedError, PolicyViolationError
from identities.models import AuditEvent, IdentityRequest, ResourceGroupOwnership
from identities.policy import RoleDraft, evaluate_request
from identities.selectors import approval_queue, identity_requests_visible_to
from identities.services import (
    identity_request_approve,
    identity_request_create,
    identity_request_reject,
)
from tests.identities.policy_support import SUBSCRIPTION as POLICY_SUBSCRIPTION
from tests.identities.policy_support import VAULT, make_context, make_draft
from tests.support.people import SUBSCRIPTION, VAULT_SCOPE, DraftFactory

pytestmark = pytest.mark.django_db

IDENTITY_SCOPE = (
    f"/subscriptions/{POLICY_SUBSCRIPTION}/resourceGroups/rg-payments/providers"
    "/Microsoft.ManagedIdentity/userAssignedIdentities/id-payments"
)
PORTAL_IDENTITIES_VAULT = VAULT.replace("rg-payments", "rg-identities")


def rules(draft: Any, **context: Any) -> set[tuple[str, str]]:
    return {(v.field, v.rule) for v in evaluate_request(draft, make_context(**context)).violations}


def warnings(draft: Any) -> set[tuple[str, str]]:
    return {(w.field, w.rule) for w in evaluate_request(draft, make_context()).warnings}


# --- the policy ------------------------------------------------------------------------------


def test_a_scope_in_the_teams_own_resource_group_is_ordinary() -> None:
    result = evaluate_request(make_draft(), make_context())
    assert result.ok
    assert result.owner_teams == []


def test_a_scope_in_another_teams_resource_group_is_cross_team() -> None:
    draft = make_draft(team="search", namespace="search")
    result = evaluate_request(draft, make_context(owned_namespaces=frozenset({"search"})))
    assert result.ok
    assert result.owner_teams == ["payments"]
    assert ("roles[0].scope", "cross_team_scope") in {(w.field, w.rule) for w in result.warnings}


def test_without_a_team_no_scope_is_called_another_teams() -> None:
    """Acceptance run: a body without `team` was told its own team's vault was another team's
    (and a member of it must approve); `team` is refused as required, ownership not judged."""
    result = evaluate_request(make_draft(team=""), make_context())
    assert ("team", "required") in {(v.field, v.rule) for v in result.violations}
    assert "cross_team_scope" not in {w.rule for w in result.warnings}
    assert result.owner_teams == []


def test_a_scope_nobody_owns_is_refused_unless_an_exception() -> None:
    unowned = VAULT.replace("rg-payments", "rg-nobody")
    assert ("roles[0].scope", "scope_unowned") in rules(
        make_draft(roles=(RoleDraft("Key Vault Secrets User", unowned),))
    )
    exception = make_draft(
        roles=(RoleDraft("Key Vault Secrets User", unowned),),
        is_exception=True,
        justification="The vault's owner team is being set up; security approves twice.",
    )
    assert ("roles[0].scope", "scope_unowned") in warnings(exception)
    assert evaluate_request(exception, make_context()).ok


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        ("Reader", IDENTITY_SCOPE),
        ("Managed Identity Contributor", IDENTITY_SCOPE),
        ("Key Vault Secrets User", PORTAL_IDENTITIES_VAULT),
        ("Contributor", f"/subscriptions/{POLICY_SUBSCRIPTION}"),
        ("Owner", f"/subscriptions/{POLICY_SUBSCRIPTION}/resourceGroups/rg-identities"),
    ],
)
def test_a_protected_scope_is_refused_even_as_an_exception(role: str, scope: str) -> None:
    draft = make_draft(
        roles=(RoleDraft(role, scope),),
        is_exception=True,
        justification="An exception, with a justification long enough to count for one.",
    )
    assert ("roles[0].scope", "protected_scope") in rules(draft)


def test_a_reader_on_a_subscription_holding_the_portals_identities_is_only_broad() -> None:
    draft = make_draft(
        roles=(RoleDraft("Reader", f"/subscriptions/{POLICY_SUBSCRIPTION}"),),
        is_exception=True,
        justification="An exception, with a justification long enough to count for one.",
    )
    assert evaluate_request(draft, make_context()).ok


def test_managed_identity_roles_are_privileged(catalog: Any) -> None:
    assert catalog["Managed Identity Contributor"].privileged
    assert catalog["Managed Identity Operator"].privileged


# --- approval --------------------------------------------------------------------------------


@pytest.fixture
def cross_team_request(outsider: Any, make_draft: DraftFactory) -> IdentityRequest:
    """bob (team search) asks for a role on payments' vault."""
    return identity_request_create(
        requester=outsider,
        draft=make_draft(
            team="search", namespace="search", app_name="indexer", service_account="indexer"
        ),
    )


def test_a_cross_team_request_records_the_owning_team_and_is_visible_to_it(
    cross_team_request: IdentityRequest, requester: Any, teammate: Any
) -> None:
    assert [team.name for team in cross_team_request.owner_teams.all()] == ["payments"]
    created = AuditEvent.objects.get(
        identity_request=cross_team_request, action=AuditAction.REQUEST_CREATED
    )
    assert created.data["owner_teams"] == ["payments"]
    assert cross_team_request in identity_requests_visible_to(teammate)
    [item] = approval_queue(requester)
    assert item.identity_request == cross_team_request
    assert item.acting_for == "payments"
    assert item.owner_teams == ("payments",)


def test_security_alone_cannot_approve_a_cross_team_request(
    cross_team_request: IdentityRequest, approver: Any, requester: Any
) -> None:
    identity_request_approve(identity_request=cross_team_request, approver=approver)

    cross_team_request.refresh_from_db()
    assert cross_team_request.status == IdentityRequest.Status.PENDING
    recorded = AuditEvent.objects.filter(
        identity_request=cross_team_request, action=AuditAction.REQUEST_APPROVAL_RECORDED
    ).get()
    assert recorded.data["owner_teams_pending"] == ["payments"]

    identity_request_approve(
        identity_request=cross_team_request, approver=requester, comment="Our vault: fine."
    )

    cross_team_request.refresh_from_db()
    assert cross_team_request.status == IdentityRequest.Status.APPROVED
    approved = AuditEvent.objects.get(
        identity_request=cross_team_request, action=AuditAction.REQUEST_APPROVED
    )
    assert approved.actor == requester
    assert approved.data["owner_approvals"] == {"payments": requester.get_username()}
    assert approved.data["approvers"] == [approver.get_username()]
    owner_approval = cross_team_request.approvals.get(approver=requester)
    assert owner_approval.on_behalf_of is not None
    assert owner_approval.on_behalf_of.name == "payments"


def test_the_owners_approval_alone_does_not_complete_it_either(
    cross_team_request: IdentityRequest, approver: Any, requester: Any
) -> None:
    identity_request_approve(identity_request=cross_team_request, approver=requester)
    cross_team_request.refresh_from_db()
    assert cross_team_request.status == IdentityRequest.Status.PENDING
    assert approval_queue(requester) == []  # payments has approved: nothing left for them

    identity_request_approve(identity_request=cross_team_request, approver=approver)
    cross_team_request.refresh_from_db()
    assert cross_team_request.status == IdentityRequest.Status.APPROVED


def test_a_member_of_an_uninvolved_team_cannot_approve(
    pending_request: IdentityRequest, outsider: Any
) -> None:
    with pytest.raises(PermissionDeniedError):
        identity_request_approve(identity_request=pending_request, approver=outsider)


def test_the_owning_team_may_reject_with_a_comment(
    cross_team_request: IdentityRequest, requester: Any
) -> None:
    identity_request_reject(
        identity_request=cross_team_request, approver=requester, comment="Not our data to share."
    )
    cross_team_request.refresh_from_db()
    assert cross_team_request.status == IdentityRequest.Status.REJECTED
    assert cross_team_request.approvals.get().on_behalf_of is not None


def test_a_request_made_unowned_since_filing_is_refused_at_approval(
    pending_request: IdentityRequest, approver: Any
) -> None:
    ResourceGroupOwnership.objects.filter(resource_group="rg-payments").delete()
    with pytest.raises(PolicyViolationError) as refused:
        identity_request_approve(identity_request=pending_request, approver=approver)
    assert ("roles[0].scope", "scope_unowned") in {
        (v.field, v.rule) for v in refused.value.result.violations
    }


def test_the_command_records_an_owner_and_the_audit_trail_says_so(team: Any) -> None:
    out = StringIO()
    call_command(
        "resource_group_owner",
        "set",
        "--team",
        "payments",
        "--subscription",
        SUBSCRIPTION.upper(),
        "--resource-group",
        "rg-new",
        stdout=out,
    )
    ownership = ResourceGroupOwnership.objects.get(resource_group="rg-new")
    assert ownership.team == team
    assert ownership.subscription_id == SUBSCRIPTION
    assert AuditEvent.objects.filter(
        action=AuditAction.RESOURCE_GROUP_OWNERSHIP_CREATED, data__id=ownership.pk
    ).exists()

    call_command(
        "resource_group_owner",
        "remove",
        "--subscription",
        SUBSCRIPTION,
        "--resource-group",
        "RG-NEW",
        stdout=out,
    )
    assert not ResourceGroupOwnership.objects.filter(resource_group="rg-new").exists()
    assert AuditEvent.objects.filter(action=AuditAction.RESOURCE_GROUP_OWNERSHIP_DELETED).exists()


def test_configured_protected_groups_are_parsed_and_a_typo_is_loud(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from identities.selectors.policy import protected_resource_groups

    settings.PROTECTED_RESOURCE_GROUPS = [
        f"/SUBSCRIPTIONS/{SUBSCRIPTION.upper()}/resourcegroups/RG-Platform"
    ]
    assert f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-platform" in (
        protected_resource_groups()
    )
    for typo in ("rg-platform", f"/subscriptions/{SUBSCRIPTION}", VAULT_SCOPE):
        settings.PROTECTED_RESOURCE_GROUPS = [typo]
        with pytest.raises(ImproperlyConfigured):
            protected_resource_groups()
