"""Reads for access reviews and ownership transfers. Security, auditors and admins see every
campaign and item; a team member sees the campaigns with items of their teams, and only those
items. Transfers are seen by both teams and the see-all roles."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet

from identities import roles
from identities.errors import NotFoundError
from identities.models import (
    REQUEST_STATUSES_IN_FLIGHT,
    AccessReviewAttestation,
    AccessReviewCampaign,
    AccessReviewItem,
    ChildStatus,
    Identity,
    IdentityStatus,
    OwnershipTransfer,
    ReviewItemState,
    Team,
)
from identities.selectors.people import teams_of

# --- campaigns and items ------------------------------------------------------------------------


def access_review_campaigns_visible_to(user: Any) -> QuerySet[AccessReviewCampaign]:
    queryset = AccessReviewCampaign.objects.select_related(
        "opened_by", "closed_by", "filter_team", "filter_role"
    )
    if roles.sees_everything(user):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    with_my_items = AccessReviewItem.objects.filter(team_id__in=_team_ids(user)).values(
        "campaign_id"
    )
    return queryset.filter(pk__in=with_my_items)


def access_review_campaign_get(*, user: Any, pk: int) -> AccessReviewCampaign:
    campaign = access_review_campaigns_visible_to(user).filter(pk=pk).first()
    if campaign is None:
        raise NotFoundError(f"Access review {pk} was not found.")
    return campaign


def access_review_items_visible_to(
    user: Any, campaign: AccessReviewCampaign | None = None
) -> QuerySet[AccessReviewItem]:
    queryset = AccessReviewItem.objects.select_related(
        "campaign", "team", "follow_up_request"
    ).prefetch_related(
        Prefetch(
            "attestations",
            queryset=AccessReviewAttestation.objects.select_related("attester", "audit_event"),
        )
    )
    if campaign is not None:
        queryset = queryset.filter(campaign=campaign)
    if roles.sees_everything(user):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    # The team ids as literals, not a subquery: the planner then walks the (campaign, team,
    # state) index instead of checking membership for every item of a 10 000-item campaign.
    return queryset.filter(team_id__in=_team_ids(user))


def _team_ids(user: Any) -> list[int]:
    return list(teams_of(user).order_by().values_list("pk", flat=True))


def access_review_item_get(*, user: Any, pk: int) -> AccessReviewItem:
    item = access_review_items_visible_to(user).filter(pk=pk).first()
    if item is None:
        raise NotFoundError(f"Review item {pk} was not found.")
    return item


def access_review_items_to_review(
    user: Any, campaign: AccessReviewCampaign
) -> QuerySet[AccessReviewItem]:
    """The user's teams' items still waiting for them (security: every escalated item)."""
    items = access_review_items_visible_to(user, campaign).filter(
        state__in=[ReviewItemState.PENDING, ReviewItemState.AWAITING_SECOND]
    )
    if roles.is_approver(user) and not _team_ids(user):
        return items.filter(Q(escalated_at__isnull=False) | Q(privileged=True))
    return items.exclude(attestations__attester=user)


@dataclass
class TeamProgress:
    team: str
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(n for key, n in self.counts.items() if key in DONE_KEYS)

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


# The progress keys: an item's decision when decided, else its state; plus "escalated".
PROGRESS_KEYS = ("keep", "reduce", "remove", "revoked", "awaiting_second", "pending")
DONE_KEYS = frozenset({"keep", "reduce", "remove", "revoked"})


@dataclass
class CampaignProgress:
    total: int
    counts: dict[str, int]
    escalated: int
    teams: list[TeamProgress]

    @property
    def done(self) -> int:
        return sum(n for key, n in self.counts.items() if key in DONE_KEYS)

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


def access_review_progress(user: Any, campaign: AccessReviewCampaign) -> CampaignProgress:
    """Counts by decision (or state) overall and per team, over the items `user` may see: one
    GROUP BY query, however many items."""
    # Grouped by team id (no join over every item); the few team names are read after.
    rows = list(
        access_review_items_visible_to(user, campaign)
        .select_related(None)
        .prefetch_related(None)
        .order_by()
        .values("team_id", "state", "decision")
        .annotate(n=Count("id"), escalated=Count("id", filter=Q(escalated_at__isnull=False)))
    )
    names = dict(
        Team.objects.filter(pk__in={row["team_id"] for row in rows}).values_list("pk", "name")
    )
    counts: dict[str, int] = dict.fromkeys(PROGRESS_KEYS, 0)
    teams: dict[str, TeamProgress] = {}
    escalated = 0
    for row in rows:
        key = row["decision"] if row["state"] == ReviewItemState.DECIDED else row["state"]
        counts[key] = counts.get(key, 0) + row["n"]
        name = names[row["team_id"]]
        team = teams.setdefault(name, TeamProgress(name, counts=defaultdict(int)))
        team.total += row["n"]
        team.counts[key] += row["n"]
        escalated += row["escalated"]
    return CampaignProgress(
        total=sum(counts.values()),
        counts=counts,
        escalated=escalated,
        teams=sorted(teams.values(), key=lambda t: t.team),
    )


# --- evidence ---------------------------------------------------------------------------------

EVIDENCE_FIELDS = (
    "campaign",
    "item",
    "identity",
    "team",
    "roles",
    "scopes",
    "attester",
    "decision",
    "as_security",
    "time",
    "audit_row_id",
    "audit_row_hash",
    "item_state",
)


def access_review_evidence(user: Any, campaign: AccessReviewCampaign) -> Iterator[dict[str, Any]]:
    """One record per attestation (with its audit row's id and hash, to find on the chain), and
    one per item nobody attested (attester and audit row empty), in item order."""
    items = access_review_items_visible_to(user, campaign).order_by("identity_name", "id")
    for item in items.iterator(chunk_size=2000):
        base = {
            "campaign": campaign.pk,
            "item": item.pk,
            "identity": item.identity_name,
            "team": item.team.name,
            "roles": [r["role"] for r in item.roles],
            "scopes": [r["scope"] for r in item.roles],
            "item_state": item.state,
        }
        attestations = list(item.attestations.all())
        if not attestations:
            yield {
                **base,
                "attester": "",
                "decision": "",
                "as_security": False,
                "time": item.revoked_at.isoformat() if item.revoked_at else "",
                "audit_row_id": None,
                "audit_row_hash": "",
            }
        for attestation in attestations:
            yield {
                **base,
                "attester": attestation.attester.get_username(),
                "decision": attestation.decision,
                "as_security": attestation.as_security,
                "time": attestation.created_at.isoformat(),
                "audit_row_id": attestation.audit_event_id,
                "audit_row_hash": attestation.audit_event.hash,
            }


def evidence_jsonl(records: Iterator[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def evidence_csv(records: Iterator[dict[str, Any]]) -> Iterator[str]:
    """CSV with a header; lists (roles, scopes) are joined with " | " in the same order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EVIDENCE_FIELDS)
    writer.writeheader()
    for record in records:
        row = dict(record)
        row["roles"] = " | ".join(record["roles"])
        row["scopes"] = " | ".join(record["scopes"])
        writer.writerow({k: _csv_safe(v) for k, v in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def _csv_safe(value: Any) -> Any:
    """Spreadsheet formula injection: a cell a user typed that starts with = + - @ is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def identities_awaiting_revoke() -> list[int]:
    """Ready identities with role assignments marked `removing`: what the sweep re-sends to
    provisioning until Azure has let them go. An identity with a request in flight (a change of
    roles being written) is left to that request's worker, so two workers never race."""
    return list(
        Identity.objects.filter(
            status=IdentityStatus.READY, role_assignments__status=ChildStatus.REMOVING
        )
        .exclude(requests__status__in=REQUEST_STATUSES_IN_FLIGHT)
        .distinct()
        .values_list("pk", flat=True)
    )


# --- ownership transfers ------------------------------------------------------------------------


def ownership_transfers_visible_to(user: Any) -> QuerySet[OwnershipTransfer]:
    queryset = OwnershipTransfer.objects.select_related(
        "identity", "from_team", "to_team", "requested_by", "consented_by", "decided_by"
    )
    if roles.sees_everything(user):
        return queryset
    if not getattr(user, "is_authenticated", False):
        return queryset.none()
    teams = teams_of(user)
    return queryset.filter(Q(from_team__in=teams) | Q(to_team__in=teams))


def ownership_transfer_get(*, user: Any, pk: int) -> OwnershipTransfer:
    transfer = ownership_transfers_visible_to(user).filter(pk=pk).first()
    if transfer is None:
        raise NotFoundError(f"Ownership transfer {pk} was not found.")
    return transfer
