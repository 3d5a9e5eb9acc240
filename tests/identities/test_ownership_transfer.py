"""Ownership transfer through the services: asked by the team, consented by the receiving team,
approved by security; then the identity's team and `team` tag change, audited, and the tag
update is sent to provisioning."""

from __future__ import annotations

from typing import Any

import pytest

from identities.audit.actions import AuditAction
from identities.errors import ConflictError, DomainError, PermissionDeniedError
from identities.models import Identity, Team, TransferStatus
from identities.services import (
    ownership_transfer_approve,
    ownership_transfer_cancel,
    ownership_transfer_consent,
    ownership_transfer_reject,
    ownership_transfer_request,
)
from identities.work import Work
from tests.identities.conftest import audit_actions
from tests.support.people import IdentityFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def identity(team: Team, cluster: Any) -> Identity:
    return IdentityFactory(team=team, cluster=cluster, tags={"team": "payments", "app": "x"})


def _ask(identity: Identity, requester: Any, other_team: Team) -> Any:
    return ownership_transfer_request(
        requester=requester, identity=identity, to_team=other_team, justification="Reorg."
    )


def test_a_consented_and_approved_transfer_moves_the_identity(
    identity: Identity,
    requester: Any,
    outsider: Any,
    approver: Any,
    other_team: Team,
    work_sent: list[tuple[Work, tuple[object, ...]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    transfer = _ask(identity, requester, other_team)
    assert transfer.status == TransferStatus.AWAITING_CONSENT
    with pytest.raises(ConflictError, match="consented"):
        ownership_transfer_approve(transfer=transfer, approver=approver)
    transfer = ownership_transfer_consent(transfer=transfer, actor=outsider)
    assert transfer.status == TransferStatus.AWAITING_APPROVAL
    with django_capture_on_commit_callbacks(execute=True):
        transfer = ownership_transfer_approve(transfer=transfer, approver=approver)
    assert transfer.status == TransferStatus.COMPLETED
    identity.refresh_from_db()
    assert identity.team == other_team
    assert identity.tags == {"team": "search", "app": "x"}
    assert work_sent == [(Work.UPDATE_TAGS, (identity.pk,))]
    assert audit_actions(identity=identity) == [
        AuditAction.TRANSFER_REQUESTED,
        AuditAction.TRANSFER_CONSENTED,
        AuditAction.TRANSFER_APPROVED,
        AuditAction.IDENTITY_TEAM_CHANGED,
    ]


def test_only_the_owning_team_asks(
    identity: Identity, outsider: Any, approver: Any, other_team: Team
) -> None:
    for user in (outsider, approver):
        with pytest.raises(PermissionDeniedError):
            _ask(identity, user, other_team)


def test_bad_input_names_the_field(identity: Identity, requester: Any, team: Team) -> None:
    with pytest.raises(DomainError, match=r"^to_team:"):
        _ask(identity, requester, team)
    with pytest.raises(DomainError, match=r"^justification:"):
        ownership_transfer_request(
            requester=requester, identity=identity, to_team=team, justification=" "
        )


def test_a_second_open_transfer_is_refused_naming_the_first(
    identity: Identity, requester: Any, other_team: Team
) -> None:
    first = _ask(identity, requester, other_team)
    with pytest.raises(ConflictError, match=f"#{first.pk}"):
        _ask(identity, requester, other_team)


def test_only_the_receiving_team_consents_and_only_security_approves(
    identity: Identity,
    requester: Any,
    teammate: Any,
    outsider: Any,
    approver: Any,
    other_team: Team,
) -> None:
    transfer = _ask(identity, requester, other_team)
    for user in (teammate, approver):
        with pytest.raises(PermissionDeniedError):
            ownership_transfer_consent(transfer=transfer, actor=user)
    ownership_transfer_consent(transfer=transfer, actor=outsider)
    for user in (requester, outsider):
        with pytest.raises(PermissionDeniedError):
            ownership_transfer_approve(transfer=transfer, approver=user)


def test_rejection_needs_a_comment_and_cancel_is_the_giving_teams(
    identity: Identity, requester: Any, outsider: Any, other_team: Team
) -> None:
    transfer = _ask(identity, requester, other_team)
    with pytest.raises(DomainError, match=r"^comment:"):
        ownership_transfer_reject(transfer=transfer, actor=outsider, comment="")
    with pytest.raises(PermissionDeniedError):
        ownership_transfer_cancel(transfer=transfer, actor=outsider)
    transfer = ownership_transfer_reject(transfer=transfer, actor=outsider, comment="Not ours.")
    assert transfer.status == TransferStatus.REJECTED
    identity.refresh_from_db()
    assert identity.team.name == "payments"
    again = _ask(identity, requester, other_team)  # a closed transfer frees the identity
    assert ownership_transfer_cancel(transfer=again, actor=requester).status == "cancelled"
