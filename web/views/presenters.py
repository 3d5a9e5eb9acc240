"""Shapes what selectors return into what pages show: timelines, grant diffs, progress, allowed
actions. Everything here reads objects the caller already obtained through a selector (so
visibility is decided there); nothing writes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from identities import roles
from identities.audit.actions import AuditAction
from identities.lifecycle import can_transition, cancellable
from identities.models import (
    AuditEvent,
    ChildStatus,
    Identity,
    IdentityRequest,
    IdentityStatus,
    RequestKind,
    RequestStatus,
    RoleChange,
)
from identities.naming import fic_subject, uami_name
from identities.policy import RoleDraft
from identities.policy.scope_context import ScopeContext
from identities.scopes import ScopeError, parse_scope
from identities.selectors import is_team_member, may_act_for_team, teams_of
from identities.selectors.policy import identity_request_review, scope_owners
from identities.validators import FIC_LIMIT_PER_IDENTITY

# --- timeline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One milestone of a request: done (with when and who), current, or still to come."""

    title: str
    state: str  # "done", "failed", "upcoming"
    at: datetime | None = None
    actor: str = ""
    detail: str = ""


_MILESTONES: dict[str, str] = {
    AuditAction.REQUEST_CREATED: "Filed",
    AuditAction.REQUEST_APPROVAL_RECORDED: "First approval recorded",
    AuditAction.REQUEST_APPROVED: "Approved",
    AuditAction.REQUEST_REJECTED: "Rejected",
    AuditAction.REQUEST_SENT_BACK: "Sent back for changes",
    AuditAction.REQUEST_RESUBMITTED: "Resubmitted",
    AuditAction.REQUEST_CANCELLED: "Cancelled",
    AuditAction.REQUEST_PROVISIONING: "Provisioning started",
    AuditAction.REQUEST_REQUEUED: "Provisioning re-queued",
    AuditAction.REQUEST_READY: "Ready",
    AuditAction.REQUEST_FAILED: "Provisioning failed",
    AuditAction.VERIFICATION_REQUESTED: "Verification requested",
    AuditAction.VERIFICATION_WORKS: "Verified: federation works",
    AuditAction.VERIFICATION_FAILED: "Verification failed",
    AuditAction.VERIFICATION_INCONCLUSIVE: "Verification could not run",
}


def _milestone_detail(event: AuditEvent) -> str:
    data = event.data or {}
    if event.action == AuditAction.REQUEST_PROVISIONING and data.get("retry"):
        return "Retry of a failed run."
    if event.action in {AuditAction.REQUEST_FAILED}:
        return str(data.get("error", ""))
    if event.action.startswith("identity_request.verification_") and data.get("summary"):
        return str(data["summary"])
    comment = str(data.get("comment") or "").strip()
    if comment:
        return f"“{comment}”"
    return ""


def request_timeline(
    identity_request: IdentityRequest, events: Iterable[AuditEvent]
) -> list[TimelineEntry]:
    """The request's own milestones from its audit trail (oldest first), then what comes next."""
    entries: list[TimelineEntry] = []
    for event in sorted(events, key=lambda e: e.id):
        title = _MILESTONES.get(event.action)
        if title is None:
            continue
        if event.action == AuditAction.REQUEST_PROVISIONING and (event.data or {}).get("retry"):
            title = "Retry requested"
        if (
            event.action == AuditAction.REQUEST_READY
            and identity_request.kind == RequestKind.DECOMMISSION
        ):
            title = "Removed"
        failed = event.action in {
            AuditAction.REQUEST_FAILED,
            AuditAction.REQUEST_REJECTED,
            AuditAction.VERIFICATION_FAILED,
        }
        entries.append(
            TimelineEntry(
                title=title,
                state="failed" if failed else "done",
                at=event.created_at,
                actor=event.actor_label,
                detail=_milestone_detail(event),
            )
        )
    done = "Removed" if identity_request.kind == RequestKind.DECOMMISSION else "Ready"
    upcoming = {
        RequestStatus.PENDING: ["Approval", "Provisioning", done],
        RequestStatus.SENT_BACK: ["Resubmission", "Approval", "Provisioning", done],
        RequestStatus.APPROVED: ["Provisioning", done],
        RequestStatus.PROVISIONING: [done],
    }.get(RequestStatus(identity_request.status), [])
    if identity_request.status == RequestStatus.PENDING and identity_request.approvals_required > 1:
        upcoming[0] = f"Approval by {identity_request.approvals_required} different approvers"
    entries.extend(TimelineEntry(title=title, state="upcoming") for title in upcoming)
    return entries


# --- provisioning progress ----------------------------------------------------------------------


@dataclass(frozen=True)
class StepRow:
    label: str
    status: str
    attempts: int
    duration: str
    azure_request_id: str
    error: str


@dataclass(frozen=True)
class Progress:
    steps: list[StepRow]
    done: int
    total: int
    failed: int

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0

    @property
    def summary(self) -> str:
        if not self.total:
            return "No provisioning steps yet."
        text = f"{self.done} of {self.total} steps done"
        if self.failed:
            text += f", {self.failed} failed"
        return text + "."


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def provisioning_progress(steps: Sequence[Any]) -> Progress:
    """`steps` are provisioning.models.ProvisioningStep rows in plan order."""
    rows = [
        StepRow(
            label=step.label,
            status=step.status,
            attempts=step.attempts,
            duration=human_duration(step.duration_seconds),
            azure_request_id=step.azure_request_id,
            error=step.error,
        )
        for step in steps
    ]
    return Progress(
        steps=rows,
        done=sum(1 for row in rows if row.status == "done"),
        total=len(rows),
        failed=sum(1 for row in rows if row.status == "failed"),
    )


# --- verification -------------------------------------------------------------------------------


def verification_pending(
    identity_request: IdentityRequest, latest: Any | None, events: Sequence[AuditEvent]
) -> bool:
    """A verification is under way: one was asked for after the newest result, the newest is
    still propagating, or the request just became ready and the automatic check has not run."""
    if identity_request.status != RequestStatus.READY:
        return False
    if identity_request.kind == RequestKind.DECOMMISSION:
        return False
    if identity_gone(identity_request.identity):
        return False
    if latest is not None and latest.outcome == "propagating":
        return True
    asked = [e.created_at for e in events if e.action == AuditAction.VERIFICATION_REQUESTED]
    if asked and (latest is None or max(asked) > latest.created_at):
        return True
    if latest is None and getattr(settings, "VERIFY_AFTER_PROVISIONING", False):
        ready_at = [e.created_at for e in events if e.action == AuditAction.REQUEST_READY]
        window = timedelta(seconds=getattr(settings, "VERIFY_PROPAGATION_WINDOW_SECONDS", 600))
        return bool(ready_at) and timezone.now() - max(ready_at) < window
    return False


# --- decommissioned identities ------------------------------------------------------------------

IDENTITY_STATUSES_GONE = frozenset({IdentityStatus.DECOMMISSIONING, IdentityStatus.DECOMMISSIONED})


def identity_gone(identity: Identity | None) -> bool:
    """Being or already deleted in Azure: nothing to verify, copy or deploy any more."""
    return identity is not None and identity.status in IDENTITY_STATUSES_GONE


@dataclass(frozen=True)
class ClusterCleanup:
    """What a team removes from the cluster for one ServiceAccount of a deleted identity."""

    namespace: str
    service_account: str
    commands: str
    portal_applies: bool
    removed_by_portal: bool


def cluster_cleanup(
    identity: Identity | None, events: Iterable[AuditEvent]
) -> list[ClusterCleanup]:
    """One entry per ServiceAccount the identity was federated with, once it is being deleted.

    `events` are audit rows the caller may see; an annotation the portal removed shows as done.
    """
    if identity is None or not identity_gone(identity):
        return []
    released = {
        (str(event.data.get("namespace")), str(event.data.get("service_account")))
        for event in events
        if event.action == AuditAction.KUBE_SERVICE_ACCOUNT_RELEASED
        and event.data
        and event.data.get("annotation_removed")
    }
    portal_applies = identity.cluster.apply_service_account
    seen: set[tuple[str, str]] = set()
    entries = []
    for fic in identity.federated_credentials.all():
        key = (fic.namespace, fic.service_account)
        if key in seen:
            continue
        seen.add(key)
        commands = "\n".join(
            (
                "# Workloads still labelled to get this identity's token injected:",
                f"kubectl get pods -n {fic.namespace} -l azure.workload.identity/use=true",
                "# Remove the client-id annotation (or delete the ServiceAccount if unused):",
                f"kubectl annotate serviceaccount {fic.service_account} -n {fic.namespace} "
                "azure.workload.identity/client-id-",
            )
        )
        entries.append(
            ClusterCleanup(
                namespace=fic.namespace,
                service_account=fic.service_account,
                commands=commands,
                portal_applies=portal_applies,
                removed_by_portal=key in released,
            )
        )
    return entries


# --- what the user may do -------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestActions:
    """Buttons to offer. The services decide for real; this only hides what would be refused."""

    cancel: bool = False
    retry: bool = False
    verify: bool = False
    decide: bool = False
    decommission: bool = False


def request_actions(user: Any, identity_request: IdentityRequest) -> RequestActions:
    on_team = is_team_member(user, identity_request.team_id)
    may_act = may_act_for_team(user, identity_request.team_id)
    identity = identity_request.identity
    return RequestActions(
        cancel=cancellable(identity_request)
        and (
            may_act
            if identity_request.status == RequestStatus.FAILED
            else on_team or identity_request.requester_id == user.pk
        ),
        retry=can_transition(identity_request, RequestStatus.PROVISIONING)
        and identity_request.status == RequestStatus.FAILED
        and may_act,
        verify=identity_request.status == RequestStatus.READY
        and identity_request.kind not in {RequestKind.DECOMMISSION, RequestKind.CHANGE_ROLES}
        and not identity_gone(identity)
        and may_act,
        decide=identity_request.status == RequestStatus.PENDING
        and roles.is_approver(user)
        and identity_request.requester_id != user.pk,
        decommission=identity_request.kind != RequestKind.DECOMMISSION
        and identity is not None
        and identity.status in {IdentityStatus.READY, IdentityStatus.FAILED}
        and on_team
        and roles.is_requester(user),
    )


# --- what approval would grant -------------------------------------------------------------------


@dataclass(frozen=True)
class GrantLine:
    """One line of the diff an approver reads: `sign` is "+", "-" or "=" (unchanged)."""

    sign: str
    what: str
    detail: str
    risky: bool = False
    note: str = ""


def _owner_note(scope: str, owners: dict[str, str], team: str) -> str:
    """Who owns the scope's resource group, as the approver reads it."""
    try:
        group = parse_scope(scope).resource_group_id
    except ScopeError:
        return ""
    if group is None:
        return "a whole subscription"
    owner = owners.get(group.lower())
    if owner is None:
        return "owned by no team"
    if owner == team:
        return f"{team}'s own resource group"
    return f"owned by team {owner}: cross-team, {owner} must approve too"


def role_owner_notes(
    identity_request: IdentityRequest, scopes: Sequence[ScopeContext] | None = None
) -> list[tuple[Any, ScopeContext | None]]:
    """Each requested role with what an approver reads about its scope (owner, existence in
    Azure, cross-team, protected, risk): the request page's "What was asked for". `scopes` is
    the approval item's when the viewer has a decision to make (judged once per page)."""
    rows = [
        r for r in identity_request.roles.all() if r.change in (RoleChange.NONE, RoleChange.ADD)
    ]
    if not rows:
        return []
    if scopes is None:
        scopes = identity_request_review(identity_request)[1]
    found: list[ScopeContext | None] = list(scopes)
    return list(zip(rows, found + [None] * (len(rows) - len(found)), strict=False))


def grant_diff(identity_request: IdentityRequest) -> list[GrantLine]:
    """What approving `identity_request` adds to or removes from Azure."""
    cluster = identity_request.cluster
    lines: list[GrantLine] = []
    if identity_request.kind == RequestKind.DECOMMISSION:
        identity = identity_request.identity
        if identity is None:
            return lines
        for assignment in identity.role_assignments.all():
            if assignment.status == ChildStatus.REMOVED:
                continue
            lines.append(
                GrantLine("-", "Role assignment", f"{assignment.role.name} on {assignment.scope}")
            )
        for fic in identity.federated_credentials.all():
            if fic.status == ChildStatus.REMOVED:
                continue
            lines.append(GrantLine("-", "Federated credential", f"{fic.subject} ({fic.issuer})"))
        lines.append(GrantLine("-", "Managed identity", identity.name))
        return lines
    if identity_request.kind == RequestKind.CHANGE_ROLES:
        return change_lines(identity_request)

    subject = fic_subject(identity_request.namespace, identity_request.service_account)
    if identity_request.kind == RequestKind.NEW:
        name = uami_name(
            cluster=cluster.name,
            namespace=identity_request.namespace,
            app_name=identity_request.app_name,
            service_account=identity_request.service_account,
        )
        lines.append(
            GrantLine(
                "+",
                "Managed identity",
                name,
                note=f"in {cluster.resource_group}, subscription {cluster.subscription_id}",
            )
        )
    lines.append(
        GrantLine("+", "Federated credential", subject, note=f"issuer {cluster.oidc_issuer_url}")
    )
    if identity_request.kind == RequestKind.NEW:
        requested_roles = list(identity_request.roles.all())
        owners = scope_owners(
            RoleDraft(requested.role.name, requested.scope) for requested in requested_roles
        )
        for requested in requested_roles:
            owner = _owner_note(requested.scope, owners, identity_request.team.name)
            privileged = requested.role.privileged or requested.role.can_assign_roles
            lines.append(
                GrantLine(
                    "+",
                    "Role assignment",
                    f"{requested.role.name} on {requested.scope}",
                    risky=privileged or owner.startswith("owned by team"),
                    note="; ".join(
                        note for note in ("privileged" if privileged else "", owner) if note
                    ),
                )
            )
    elif identity_request.identity is not None:
        for assignment in identity_request.identity.role_assignments.all():
            if assignment.status == ChildStatus.REMOVED:
                continue
            lines.append(
                GrantLine(
                    "=",
                    "Role assignment (shared)",
                    f"{assignment.role.name} on {assignment.scope}",
                    risky=assignment.role.privileged,
                    note="the new ServiceAccount gets the identity's existing roles",
                )
            )
    return lines


CHANGE_SIGNS = {
    RoleChange.ADD: "+",
    RoleChange.REMOVE: "-",
    RoleChange.RENEW: "=",
    RoleChange.KEEP: "=",
}


def change_lines(identity_request: IdentityRequest) -> list[GrantLine]:
    """A change request's diff per role and scope: added, removed, then unchanged."""
    rows = sorted(
        identity_request.roles.all(),
        key=lambda row: (
            list(CHANGE_SIGNS).index(RoleChange(row.change))
            if row.change in CHANGE_SIGNS
            else len(CHANGE_SIGNS)
        ),
    )
    owners = scope_owners(
        RoleDraft(row.role.name, row.scope) for row in rows if row.change == RoleChange.ADD
    )
    lines = []
    for row in rows:
        sign = CHANGE_SIGNS.get(RoleChange(row.change), "+")
        privileged = row.role.privileged or row.role.can_assign_roles
        owner = _owner_note(row.scope, owners, identity_request.team.name) if sign == "+" else ""
        what = "Role assignment" if sign != "=" else "Role assignment (unchanged)"
        if row.change == RoleChange.RENEW:
            what = "Role assignment (kept, new end date)"
        ends = f"ends {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ""
        lines.append(
            GrantLine(
                sign,
                what,
                f"{row.role.name} on {row.scope}",
                risky=sign != "-" and (privileged or owner.startswith("owned by team")),
                note="; ".join(
                    note for note in ("privileged" if privileged else "", owner, ends) if note
                ),
            )
        )
    return lines


# --- inventory -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FicUsage:
    used: int
    limit: int = FIC_LIMIT_PER_IDENTITY

    @property
    def label(self) -> str:
        return f"{self.used}/{self.limit}"

    @property
    def level(self) -> str:
        if self.used >= self.limit:
            return "full"
        return "high" if self.used >= self.limit * 0.8 else "ok"


def fic_usage(identity: Identity) -> FicUsage:
    """Live federated credentials (prefetched by the selector) against Azure's limit."""
    return FicUsage(
        used=sum(1 for fic in identity.federated_credentials.all() if fic.status != "removed")
    )


@dataclass(frozen=True)
class IdentityRow:
    identity: Identity
    usage: FicUsage
    drift_findings: list[dict[str, Any]] = field(default_factory=list)
    can_repair: bool = False


def identity_rows(user: Any, identities: Iterable[Identity]) -> list[IdentityRow]:
    staff = roles.is_approver(user) or roles.is_admin(user)
    team_ids = set(teams_of(user).values_list("pk", flat=True))
    rows = []
    for identity in identities:
        findings = list((identity.drift_details or {}).get("findings", []))
        rows.append(
            IdentityRow(
                identity=identity,
                usage=fic_usage(identity),
                drift_findings=findings,
                can_repair=identity.status == IdentityStatus.READY
                and (staff or identity.team_id in team_ids),
            )
        )
    return rows


# --- audit rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    data_json: str

    @property
    def tone(self) -> str:
        action = self.event.action
        if action.endswith((".failed", ".rejected", ".drift_detected", ".deleted_extra")):
            return "danger"
        if action.endswith((".ready", ".approved", ".verification_works")):
            return "ok"
        return ""


def audit_rows(events: Iterable[AuditEvent]) -> list[AuditRow]:
    return [
        AuditRow(
            event, json.dumps(event.data, sort_keys=True, ensure_ascii=False) if event.data else ""
        )
        for event in events
    ]
