"""Existence and tag ownership from Azure Resource Graph (the emulator's, over HTTPS through the
real SDK): a scope Azure does not hold is refused at filing and again at approval; one that
cannot be checked is accepted with a finding the approver sees; a resource tagged for a team is
that team's."""

from __future__ import annotations

import pytest
from django.test import override_settings

from identities.errors import PolicyViolationError
from identities.models import IdentityRequest, RequestStatus
from identities.policy import RoleDraft, risk_summary
from identities.selectors import identity_request_draft, identity_request_policy
from identities.services import identity_request_approve, identity_request_create
from tests.support.emulator import Emulator
from tests.support.people import STORAGE_SCOPE, SUBSCRIPTION, VAULT_SCOPE, DraftFactory

pytestmark = pytest.mark.django_db

SHARED_VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-shared"
    "/providers/Microsoft.KeyVault/vaults/kv-shared"
)


def graph_queries(emulator: Emulator) -> int:
    return sum(1 for entry in emulator.requests() if entry["op"] == "graph.query")


def test_a_scope_that_exists_in_azure_is_accepted(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory
) -> None:
    resource_graph.register_resources(VAULT_SCOPE)

    identity_request = identity_request_create(requester=requester, draft=make_draft())

    assert identity_request.status == RequestStatus.PENDING
    assert identity_request_policy(identity_request).warnings == []
    assert graph_queries(resource_graph) >= 1


def test_a_scope_that_does_not_exist_is_refused_naming_the_field_and_the_scope(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory
) -> None:
    resource_graph.register_resources(STORAGE_SCOPE)  # the group exists; the vault does not
    draft = make_draft(
        roles=(
            RoleDraft("Storage Blob Data Reader", STORAGE_SCOPE),
            RoleDraft("Key Vault Secrets User", VAULT_SCOPE),
        )
    )

    with pytest.raises(PolicyViolationError) as caught:
        identity_request_create(requester=requester, draft=draft)

    [missing] = caught.value.violations
    assert (missing.field, missing.rule) == ("roles[1].scope", "scope_not_found")
    assert VAULT_SCOPE in missing.message
    assert not IdentityRequest.objects.exists()


def test_a_child_scope_is_looked_up_by_its_top_level_resource(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory
) -> None:
    resource_graph.register_resources(STORAGE_SCOPE)
    container = f"{STORAGE_SCOPE}/blobServices/default/containers/invoices"

    identity_request = identity_request_create(
        requester=requester,
        draft=make_draft(roles=(RoleDraft("Storage Blob Data Reader", container),)),
    )
    elsewhere = container.replace("stpayments", "stgone")
    with pytest.raises(PolicyViolationError) as caught:
        identity_request_create(
            requester=requester,
            draft=make_draft(
                service_account="other",
                app_name="other",
                roles=(RoleDraft("Storage Blob Data Reader", elsewhere),),
            ),
        )

    assert identity_request.status == RequestStatus.PENDING
    [missing] = caught.value.violations
    assert missing.rule == "scope_not_found"
    assert "stgone' was not found" in missing.message


def test_when_azure_cannot_be_asked_the_request_is_accepted_unverified_and_approval_asks_again(
    resource_graph: Emulator, requester: object, approver: object, make_draft: DraftFactory
) -> None:
    resource_graph.config(fault_rate_500=1.0, fault_ops=["graph.query"])

    identity_request = identity_request_create(requester=requester, draft=make_draft())

    result = identity_request_policy(identity_request)
    [unverified] = result.warnings
    assert (unverified.field, unverified.rule) == ("roles[0].scope", "scope_unverified")
    assert VAULT_SCOPE in unverified.message
    risk = risk_summary(identity_request_draft(identity_request), result)
    assert risk.level == "medium"
    assert unverified.message in risk.reasons

    # Azure answers again, and the vault is not there: the approval is refused.
    resource_graph.config(fault_rate_500=0.0, fault_ops=None)
    with pytest.raises(PolicyViolationError) as caught:
        identity_request_approve(identity_request=identity_request, approver=approver)

    assert [(v.field, v.rule) for v in caught.value.violations] == [
        ("roles[0].scope", "scope_not_found")
    ]
    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.PENDING


def test_answers_are_cached_so_the_second_check_asks_azure_nothing(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory
) -> None:
    resource_graph.register_resources(VAULT_SCOPE)
    identity_request = identity_request_create(requester=requester, draft=make_draft())
    asked = graph_queries(resource_graph)

    identity_request_policy(identity_request)
    identity_request_policy(identity_request)

    assert asked == 1
    assert graph_queries(resource_graph) == asked


def test_with_the_cache_off_every_check_asks_again(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory
) -> None:
    resource_graph.register_resources(VAULT_SCOPE)
    with override_settings(SCOPE_LOOKUP_CACHE_SECONDS=0):
        identity_request = identity_request_create(requester=requester, draft=make_draft())
        asked = graph_queries(resource_graph)
        identity_request_policy(identity_request)

    assert graph_queries(resource_graph) == asked + 1


# --- ownership by tag ----------------------------------------------------------------------


def test_a_resource_tagged_for_another_team_is_a_cross_team_request(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory
) -> None:
    resource_graph.register_resources(SHARED_VAULT, tags={"owner-team": "search"})

    identity_request = identity_request_create(
        requester=requester,
        draft=make_draft(roles=(RoleDraft("Key Vault Secrets User", SHARED_VAULT),)),
    )

    result = identity_request_policy(identity_request)
    assert result.owner_teams == ["search"]
    [cross] = result.warnings
    assert (cross.field, cross.rule) == ("roles[0].scope", "cross_team_scope")
    assert "owner-team=search" in cross.message


def test_a_resource_tagged_for_the_requesting_team_is_its_own_in_a_group_nobody_owns(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory
) -> None:
    resource_graph.register_resources(SHARED_VAULT, tags={"owner-team": "payments"})

    identity_request = identity_request_create(
        requester=requester,
        draft=make_draft(roles=(RoleDraft("Key Vault Secrets User", SHARED_VAULT),)),
    )

    result = identity_request_policy(identity_request)
    assert result.ok
    assert (result.owner_teams, result.warnings) == ([], [])


def test_a_tag_for_another_team_in_the_requesters_own_group_still_needs_that_team(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory
) -> None:
    resource_graph.register_resources(VAULT_SCOPE, tags={"owner-team": "search"})

    identity_request = identity_request_create(requester=requester, draft=make_draft())

    assert identity_request_policy(identity_request).owner_teams == ["search"]


@pytest.mark.parametrize("tags", [{"owner-team": "no-such-team"}, {"team": "payments"}])
def test_a_tag_naming_no_team_or_another_tag_owns_nothing(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory, tags: dict[str, str]
) -> None:
    resource_graph.register_resources(SHARED_VAULT, tags=tags)

    with pytest.raises(PolicyViolationError) as caught:
        identity_request_create(
            requester=requester,
            draft=make_draft(roles=(RoleDraft("Key Vault Secrets User", SHARED_VAULT),)),
        )

    assert [(v.field, v.rule) for v in caught.value.violations] == [
        ("roles[0].scope", "scope_unowned")
    ]


def test_the_ownership_tag_is_a_setting(
    resource_graph: Emulator, requester: object, make_draft: DraftFactory
) -> None:
    resource_graph.register_resources(SHARED_VAULT, tags={"CostOwner": "payments"})

    with override_settings(OWNERSHIP_TAG="costowner"):  # tag names are case-insensitive
        identity_request = identity_request_create(
            requester=requester,
            draft=make_draft(roles=(RoleDraft("Key Vault Secrets User", SHARED_VAULT),)),
        )

    assert identity_request.status == RequestStatus.PENDING
