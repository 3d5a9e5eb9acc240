"""Access reviews through the services: open (bulk snapshot, one audit row), attest with four
eyes on privileged access, remove files a decommission, escalate and revoke when overdue."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from identities.audit.actions import AuditAction
from identities.errors import ConflictError, DomainError, PermissionDeniedError
from identities.models import (
    AccessReviewItem,
    AuditEvent,
    CatalogRole,
    ChildStatus,
    Identity,
    IdentityRequest,
    RequestKind,
    RequestStatus,
    RoleAssignment,
    Team,
)
from identities.selectors.reviews import (
    access_review_evidence,
    access_review_items_visible_to,
    access_review_progress,
    evidence_csv,
    evidence_jsonl,
    identities_awaiting_revoke,
)
from identities.services import (
    access_review_attest,
    access_review_close,
    access_review_open,
    access_reviews_escalate_overdue,
    access_reviews_revoke_overdue,
)
from identities.services.reviews import snapshot_hash
from identities.work import Work
from tests.identities.conftest import last_audit
from tests.support.people import SEARCH_VAULT_SCOPE, VAULT_SCOPE, IdentityFactory

pytestmark = pytest.mark.django_db


def _identity(team: Team, cluster: Any, role: CatalogRole, scope: str = VAULT_SCOPE) -> Identity:
    identity = IdentityFactory(team=team, cluster=cluster)
    RoleAssignment.objects.create(
        identity=identity, role=role, scope=scope, status=ChildStatus.ACTIVE, name="n"
    )
    return identity


@pytest.fixture
def world(
    team: Team, other_team: Team, cluster: Any, catalog: dict[str, CatalogRole]
) -> dict[str, Identity]:
    return {
        "plain": _identity(team, cluster, catalog["Key Vault Secrets User"]),
        "privileged": _identity(team, cluster, catalog["Contributor"]),
        "theirs": _identity(
            other_team, cluster, catalog["Key Vault Secrets User"], SEARCH_VAULT_SCOPE
        ),
    }


def _open(approver: Any, **kwargs: Any) -> Any:
    values: dict[str, Any] = {
        "actor": approver,
        "name": "Q4 recertification",
        "due_at": timezone.now() + timedelta(days=14),
    }
    values.update(kwargs)
    return access_review_open(**values)


def _item(campaign: Any, identity: Identity) -> AccessReviewItem:
    return AccessReviewItem.objects.get(campaign=campaign, identity=identity)


def test_opening_snapshots_every_live_identity_with_one_audit_row(
    world: dict[str, Identity], approver: Any
) -> None:
    before = AuditEvent.objects.count()
    campaign = _open(approver)
    assert campaign.item_count == 3
    assert AuditEvent.objects.count() == before + 1
    event = last_audit()
    assert event.action == AuditAction.ACCESS_REVIEW_OPENED
    assert event.data["item_count"] == 3
    assert event.data["snapshot_sha256"] == campaign.snapshot_hash
    item = _item(campaign, world["privileged"])
    assert item.privileged is True
    assert item.roles == [{"role": "Contributor", "scope": VAULT_SCOPE, "privileged": True}]
    # The hash is reproducible from the items (what an auditor recomputes).
    entries = [
        {"identity": i.identity_id, "name": i.identity_name, "team": i.team.name, "roles": i.roles}
        for i in campaign.items.select_related("team").order_by("identity_id")
    ]
    assert snapshot_hash(entries) == campaign.snapshot_hash


def test_filters_narrow_the_snapshot(
    world: dict[str, Identity], approver: Any, other_team: Team, catalog: dict[str, CatalogRole]
) -> None:
    assert _open(approver, privileged_only=True).item_count == 1
    assert _open(approver, team=other_team).item_count == 1
    assert _open(approver, role=catalog["Key Vault Secrets User"]).item_count == 2


def test_decommissioned_identities_are_not_reviewed(
    world: dict[str, Identity], approver: Any
) -> None:
    Identity.objects.filter(pk=world["plain"].pk).update(status=Identity.Status.DECOMMISSIONED)
    assert _open(approver).item_count == 2


def test_only_security_opens_a_campaign(world: dict[str, Identity], requester: Any) -> None:
    with pytest.raises(PermissionDeniedError):
        _open(requester)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": " "}, "name"),
        ({"due_at": timezone.now() - timedelta(days=1)}, "due_at"),
        ({"grace_days": 400}, "grace_days"),
    ],
)
def test_bad_input_names_the_field(
    world: dict[str, Identity], approver: Any, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(DomainError, match=f"^{field}:"):
        _open(approver, **kwargs)


def test_a_team_member_keeps_a_plain_item_alone(
    world: dict[str, Identity], approver: Any, requester: Any
) -> None:
    campaign = _open(approver)
    item = access_review_attest(
        item=_item(campaign, world["plain"]), attester=requester, decision="keep"
    )
    assert (item.state, item.decision) == ("decided", "keep")
    event = last_audit()
    assert event.action == AuditAction.ACCESS_REVIEW_ATTESTED
    assert event.data["decision"] == "keep"
    assert event.data["final"] is True
    assert item.attestations.get().audit_event_id == event.pk


def test_privileged_access_is_not_kept_by_its_own_team_alone(
    world: dict[str, Identity], approver: Any, requester: Any, teammate: Any
) -> None:
    campaign = _open(approver)
    item = _item(campaign, world["privileged"])
    item = access_review_attest(item=item, attester=requester, decision="keep")
    assert item.state == "awaiting_second"
    assert item.decision == ""
    with pytest.raises(ConflictError, match="second, different attester"):
        access_review_attest(item=item, attester=requester, decision="keep")
    item = access_review_attest(item=item, attester=teammate, decision="keep")
    assert (item.state, item.decision) == ("decided", "keep")
    assert item.attestations.count() == 2


def test_security_keeps_privileged_access_alone(
    world: dict[str, Identity], approver: Any, second_approver: Any
) -> None:
    campaign = _open(approver)
    item = access_review_attest(
        item=_item(campaign, world["privileged"]), attester=second_approver, decision="keep"
    )
    assert (item.state, item.decision) == ("decided", "keep")
    assert item.attestations.get().as_security is True


def test_a_team_attests_only_its_own_items(
    world: dict[str, Identity], approver: Any, outsider: Any, auditor: Any
) -> None:
    campaign = _open(approver)
    for user in (outsider, auditor):
        with pytest.raises(PermissionDeniedError):
            access_review_attest(
                item=_item(campaign, world["plain"]), attester=user, decision="keep"
            )
    visible = set(
        access_review_items_visible_to(outsider, campaign).values_list("identity", flat=True)
    )
    assert visible == {world["theirs"].pk}


def test_reduce_is_final_at_once(world: dict[str, Identity], approver: Any, requester: Any) -> None:
    campaign = _open(approver)
    item = access_review_attest(
        item=_item(campaign, world["privileged"]), attester=requester, decision="reduce"
    )
    assert (item.state, item.decision) == ("decided", "reduce")


def test_remove_files_a_decommission_request_in_the_same_transaction(
    world: dict[str, Identity], approver: Any, requester: Any
) -> None:
    campaign = _open(approver)
    item = access_review_attest(
        item=_item(campaign, world["plain"]),
        attester=requester,
        decision="remove",
        comment="App retired",
    )
    follow_up = item.follow_up_request
    assert follow_up is not None
    assert follow_up.kind == RequestKind.DECOMMISSION
    assert follow_up.identity_id == world["plain"].pk
    assert "Access review" in follow_up.justification
    assert last_audit().identity_request_id == follow_up.pk


def test_security_cannot_remove_for_a_team(world: dict[str, Identity], approver: Any) -> None:
    campaign = _open(approver)
    with pytest.raises(PermissionDeniedError, match="owning team"):
        access_review_attest(
            item=_item(campaign, world["plain"]), attester=approver, decision="remove"
        )
    assert not IdentityRequest.objects.filter(kind=RequestKind.DECOMMISSION).exists()


def test_an_unknown_decision_is_refused(
    world: dict[str, Identity], approver: Any, requester: Any
) -> None:
    campaign = _open(approver)
    with pytest.raises(DomainError, match=r"^decision:"):
        access_review_attest(
            item=_item(campaign, world["plain"]), attester=requester, decision="ok"
        )


def test_closed_campaigns_take_no_attestation(
    world: dict[str, Identity], approver: Any, requester: Any
) -> None:
    campaign = _open(approver)
    access_review_close(campaign=campaign, actor=approver)
    assert last_audit().action == AuditAction.ACCESS_REVIEW_CLOSED
    assert last_audit().data["counts"] == {"pending": 3}
    with pytest.raises(ConflictError, match="closed"):
        access_review_attest(
            item=_item(campaign, world["plain"]), attester=requester, decision="keep"
        )
    with pytest.raises(ConflictError):
        access_review_close(campaign=campaign, actor=approver)


def test_only_security_closes(world: dict[str, Identity], approver: Any, requester: Any) -> None:
    campaign = _open(approver)
    with pytest.raises(PermissionDeniedError):
        access_review_close(campaign=campaign, actor=requester)


def test_progress_counts_by_decision_and_team(
    world: dict[str, Identity], approver: Any, requester: Any, outsider: Any
) -> None:
    campaign = _open(approver)
    access_review_attest(item=_item(campaign, world["plain"]), attester=requester, decision="keep")
    access_review_attest(
        item=_item(campaign, world["privileged"]), attester=requester, decision="keep"
    )
    progress = access_review_progress(approver, campaign)
    assert progress.total == 3
    assert progress.counts["keep"] == 1
    assert progress.counts["awaiting_second"] == 1
    assert progress.counts["pending"] == 1
    assert [(t.team, t.total, t.done) for t in progress.teams] == [
        ("payments", 2, 1),
        ("search", 1, 0),
    ]
    # A team sees only its own items' progress.
    assert access_review_progress(outsider, campaign).total == 1


def test_overdue_items_are_escalated_once_with_one_row_per_campaign(
    world: dict[str, Identity], approver: Any, requester: Any
) -> None:
    campaign = _open(approver)
    access_review_attest(item=_item(campaign, world["plain"]), attester=requester, decision="keep")
    later = campaign.due_at + timedelta(hours=1)
    assert access_reviews_escalate_overdue(now=later) == {campaign.pk: 2}
    event = last_audit()
    assert event.action == AuditAction.ACCESS_REVIEW_ESCALATED
    assert event.data["count"] == 2
    assert access_reviews_escalate_overdue(now=later) == {}
    assert access_review_progress(approver, campaign).escalated == 2


def test_overdue_items_lose_their_roles_after_the_grace_period(
    world: dict[str, Identity],
    approver: Any,
    requester: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    campaign = _open(approver, grace_days=3, revoke_when_overdue=True)
    access_review_attest(item=_item(campaign, world["plain"]), attester=requester, decision="keep")
    within_grace = campaign.due_at + timedelta(days=2)
    assert access_reviews_revoke_overdue(now=within_grace) == []
    after = campaign.due_at + timedelta(days=3, minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        revoked = access_reviews_revoke_overdue(now=after)
    assert sorted(revoked) == sorted([world["privileged"].pk, world["theirs"].pk])
    assert sorted(work_sent) == sorted((Work.REVOKE_ROLES, (pk,)) for pk in revoked)
    assert world["privileged"].role_assignments.get().status == ChildStatus.REMOVING
    assert world["plain"].role_assignments.get().status == ChildStatus.ACTIVE  # attested
    assert _item(campaign, world["privileged"]).state == "revoked"
    event = last_audit()
    assert event.action == AuditAction.ACCESS_REVIEW_REVOKED
    assert event.data["role_assignments_removed"]
    assert access_reviews_revoke_overdue(now=after) == []  # idempotent


def test_campaigns_without_auto_revoke_never_revoke(
    world: dict[str, Identity], approver: Any
) -> None:
    campaign = _open(approver)
    assert access_reviews_revoke_overdue(now=campaign.due_at + timedelta(days=400)) == []
    assert not RoleAssignment.objects.filter(status=ChildStatus.REMOVING).exists()


def test_evidence_carries_each_attestations_audit_row(
    world: dict[str, Identity], approver: Any, requester: Any, teammate: Any
) -> None:
    campaign = _open(approver)
    item = _item(campaign, world["privileged"])
    access_review_attest(item=item, attester=requester, decision="keep")
    access_review_attest(item=item, attester=teammate, decision="keep")
    records = list(access_review_evidence(approver, campaign))
    assert len(records) == 4  # two attestations + two unattested items
    attested = [r for r in records if r["attester"]]
    for record in attested:
        event = AuditEvent.objects.get(pk=record["audit_row_id"])
        assert event.hash == record["audit_row_hash"]
        assert event.actor_label == record["attester"]
        assert event.data["item"] == record["item"]
        assert record["roles"] == ["Contributor"]
        assert record["scopes"] == [VAULT_SCOPE]
    lines = list(evidence_jsonl(iter(records)))
    assert [json.loads(line) for line in lines] == records
    csv_text = "".join(evidence_csv(iter(records)))
    assert csv_text.splitlines()[0].startswith("campaign,item,identity,team,roles,scopes")
    assert len(csv_text.splitlines()) == 5


def test_the_revoke_sweep_leaves_a_change_being_written_to_its_own_worker(
    world: dict[str, Identity], requester: Any
) -> None:
    """Assignments marked `removing` are re-sent by the review sweep, except while a request is
    in flight on the identity (a change of roles): that request's worker deletes them, and two
    workers must not race on one identity."""
    identity = world["plain"]
    identity.role_assignments.update(status=ChildStatus.REMOVING)
    assert identity.pk in identities_awaiting_revoke()

    IdentityRequest.objects.create(
        kind=RequestKind.CHANGE_ROLES,
        identity=identity,
        team=identity.team,
        cluster=identity.cluster,
        namespace="checkout",
        service_account="checkout",
        requester=requester,
        justification="fewer roles",
        status=RequestStatus.PROVISIONING,
    )
    assert identity.pk not in identities_awaiting_revoke()
