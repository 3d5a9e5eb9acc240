"""Writes for time-bound access: remind the owning team before an end, mark role assignments
past their end for removal, and send identities past their end to decommission.

Each is an idempotent sweep (README "Time-bound access"): what it already did is no longer
selected (a reminded end date, a `removing` assignment, an open decommission), so the beat task
can run it as often as it likes and a worker killed mid-sweep loses nothing: the transaction
either committed with its audit rows or did not happen. Azure is written by provisioning after
commit, through the same delete path change requests and access reviews use.

An identity past its end is decommissioned by a request the system files and approves itself
(actor None, `approved_by_policy: "expiry"` on its audit rows): the end date was approved with
the identity, so expiry needs no second decision. Its requester is the person who asked for
the identity (a request needs one); the audit rows name the system as the actor.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.lifecycle import transition
from identities.models import (
    REQUEST_STATUSES_IN_FLIGHT,
    REQUEST_STATUSES_OPEN,
    ChildStatus,
    Identity,
    IdentityRequest,
    IdentityStatus,
    NotificationEvent,
    RequestKind,
    RequestStatus,
    RoleAssignment,
)
from identities.services.notifications import notifications_record
from identities.services.requests import commit_desired_state, describe_request
from identities.work import Work, enqueue

LIVE_ROLE = (ChildStatus.PENDING, ChildStatus.ACTIVE)
EXPIRY_DECOMMISSION_JUSTIFICATION = "Time-bound access: the identity reached its end date."


def _role_entry(assignment: RoleAssignment) -> dict[str, str]:
    assert assignment.expires_at is not None  # noqa: S101 - selected by its end date
    return {
        "role": assignment.role.name,
        "scope": assignment.scope,
        "expires_at": assignment.expires_at.isoformat(),
    }


@transaction.atomic(durable=True)
def access_expiry_remind(*, now: datetime | None = None) -> list[int]:
    """Tell each owning team, once per end date, of role assignments and identities that end
    within ACCESS_EXPIRY_REMIND_DAYS: one audit row and one notification per identity. A renewal
    sets a new end date, which earns a new reminder. Returns the identity ids reminded."""
    now = now or timezone.now()
    horizon = now + timedelta(days=settings.ACCESS_EXPIRY_REMIND_DAYS)
    ending_roles = (
        RoleAssignment.objects.select_for_update(no_key=True, of=("self",), skip_locked=True)
        .filter(
            status__in=LIVE_ROLE,
            identity__status=IdentityStatus.READY,
            expires_at__gt=now,
            expires_at__lte=horizon,
        )
        .filter(Q(reminded_for__isnull=True) | ~Q(reminded_for=F("expires_at")))
        .select_related("role")
        .order_by("identity_id", "pk")
    )
    by_identity: dict[int, list[RoleAssignment]] = defaultdict(list)
    for assignment in ending_roles:
        by_identity[assignment.identity_id].append(assignment)
    ending_identities = {
        identity.pk: identity
        for identity in Identity.objects.select_for_update(no_key=True, skip_locked=True)
        .filter(status=IdentityStatus.READY, expires_at__gt=now, expires_at__lte=horizon)
        .filter(Q(reminded_for__isnull=True) | ~Q(reminded_for=F("expires_at")))
    }
    identities = Identity.objects.in_bulk(set(by_identity) | set(ending_identities))
    reminded: list[int] = []
    for identity_id in sorted(identities):
        identity = identities[identity_id]
        assignments = by_identity.get(identity_id, [])
        for assignment in assignments:
            assignment.reminded_for = assignment.expires_at
        RoleAssignment.objects.bulk_update(assignments, ["reminded_for"])
        identity_ends = identity_id in ending_identities
        if identity_ends:
            Identity.objects.filter(pk=identity_id).update(reminded_for=F("expires_at"))
        data = {
            "identity": identity.name,
            "roles": [_role_entry(assignment) for assignment in assignments],
            "identity_expires_at": identity.expires_at.isoformat()
            if identity_ends and identity.expires_at
            else None,
            "remind_days": settings.ACCESS_EXPIRY_REMIND_DAYS,
        }
        occurrence = audit_record(
            actor=None, action=AuditAction.IDENTITY_ACCESS_EXPIRING, identity=identity, data=data
        )
        notifications_record(
            event=NotificationEvent.ACCESS_EXPIRING,
            occurrence=occurrence,
            identity=identity,
            data=data,
        )
        reminded.append(identity_id)
    return reminded


@transaction.atomic(durable=True)
def role_assignments_expire(*, now: datetime | None = None) -> list[int]:
    """Mark every live role assignment past its end `removing`, one audit row each; provisioning
    deletes them in Azure after commit. Identities on their way out are left to their
    decommission. Returns the identity ids sent to have roles removed."""
    now = now or timezone.now()
    expired = (
        RoleAssignment.objects.select_for_update(no_key=True, of=("self",), skip_locked=True)
        .filter(status__in=LIVE_ROLE, identity__status=IdentityStatus.READY, expires_at__lte=now)
        .select_related("role", "identity")
        .order_by("pk")
    )
    identity_ids: set[int] = set()
    for assignment in expired:
        RoleAssignment.objects.filter(pk=assignment.pk).update(
            status=ChildStatus.REMOVING, updated_at=now
        )
        audit_record(
            actor=None,
            action=AuditAction.IDENTITY_ROLE_EXPIRED,
            identity=assignment.identity,
            data={"role_assignment": assignment.pk, **_role_entry(assignment)},
        )
        identity_ids.add(assignment.identity_id)
    sent = sorted(identity_ids)
    # Robust: a broker outage must not undo the committed expiry; the sweep re-sends identities
    # left with `removing` assignments.
    transaction.on_commit(lambda: _enqueue_revokes(sent), robust=True)
    return sent


def _enqueue_revokes(identity_ids: list[int]) -> None:
    for identity_id in identity_ids:
        enqueue(Work.REVOKE_ROLES, identity_id)


def identities_expire(*, now: datetime | None = None) -> list[int]:
    """Send every ready identity past its end to decommission (one transaction each, so one
    that cannot be decommissioned now does not hold up the others). An identity with a request
    in flight is left for the next sweep. Returns the decommission request ids filed."""
    now = now or timezone.now()
    due = (
        Identity.objects.filter(status=IdentityStatus.READY, expires_at__lte=now)
        .exclude(requests__status__in=REQUEST_STATUSES_IN_FLIGHT)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    filed = []
    for identity_id in list(due):
        request_id = identity_expire(identity_id=identity_id, now=now)
        if request_id is not None:
            filed.append(request_id)
    return filed


@transaction.atomic(durable=True)
def identity_expire(*, identity_id: int, now: datetime) -> int | None:
    """File and approve the decommission of one identity past its end (see the module's
    docstring); None when it is no longer due (another sweep got there first, it was renewed,
    or a request is in flight on it)."""
    identity = (
        Identity.objects.select_for_update(no_key=True)
        .filter(pk=identity_id, status=IdentityStatus.READY, expires_at__lte=now)
        .first()
    )
    if identity is None:
        return None
    if identity.requests.filter(
        Q(status__in=REQUEST_STATUSES_IN_FLIGHT)
        | Q(kind=RequestKind.DECOMMISSION, status__in=REQUEST_STATUSES_OPEN)
    ).exists():
        return None
    origin = identity.requests.filter(kind=RequestKind.NEW).order_by("created_at", "pk").first()
    assert origin is not None  # noqa: S101 - every identity is created by a request
    identity_request = IdentityRequest.objects.create(
        kind=RequestKind.DECOMMISSION,
        app_name=identity.app_name,
        team_id=identity.team_id,
        cluster_id=identity.cluster_id,
        justification=EXPIRY_DECOMMISSION_JUSTIFICATION,
        requester_id=origin.requester_id,
        identity=identity,
    )
    assert identity.expires_at is not None  # noqa: S101 - selected by its end date
    audit_record(
        actor=None,
        action=AuditAction.IDENTITY_EXPIRED,
        identity_request=identity_request,
        identity=identity,
        data={"identity": identity.name, "expires_at": identity.expires_at.isoformat()},
    )
    audit_record(
        actor=None,
        action=AuditAction.REQUEST_CREATED,
        identity_request=identity_request,
        identity=identity,
        data={"kind": identity_request.kind, "request": describe_request(identity_request)},
    )
    changes = commit_desired_state(identity_request, actor=None)
    approved = transition(
        identity_request,
        to=RequestStatus.APPROVED,
        actor=None,
        data={"approved_by_policy": "expiry", "approvers": []},
        **changes,
    )
    notifications_record(
        event=NotificationEvent.REQUEST_APPROVED,
        occurrence=approved,
        identity_request=identity_request,
        data={"actor": "the portal (end date reached)", "comment": ""},
    )
    pk = identity_request.pk
    # robust: the sweeper re-enqueues requests left in `approved` after a broker outage.
    transaction.on_commit(lambda: enqueue(Work.PROVISION, pk), robust=True)
    return pk
