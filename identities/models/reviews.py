"""Access reviews (recertification campaigns) and ownership transfers of identities."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from identities.models.azure import Identity
from identities.models.org import CatalogRole, Team


class CampaignStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class AccessReviewCampaign(models.Model):
    """A recertification opened by the security team: every live identity matching its filters
    is snapshotted as an item (its roles and scopes then) that the owning team must attest by
    `due_at`. Past `due_at` items are escalated; past `due_at` + `grace_days`, when
    `revoke_when_overdue`, an unattested item's role assignments are revoked."""

    Status = CampaignStatus

    name = models.CharField(max_length=200)
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    opened_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    grace_days = models.PositiveIntegerField(default=0)
    revoke_when_overdue = models.BooleanField(default=False)
    # The filters the snapshot was taken with (empty: every live identity).
    filter_team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    filter_role = models.ForeignKey(
        CatalogRole, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    privileged_only = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.OPEN
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    item_count = models.PositiveIntegerField(default=0)
    # SHA-256 of the snapshot's canonical JSON (identities.services.reviews.snapshot_hash),
    # also on the campaign's audit row.
    snapshot_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=CampaignStatus.values), name="reviewcampaign_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"access review #{self.pk} {self.name}"


class ReviewDecision(models.TextChoices):
    KEEP = "keep", "Still needed"
    REDUCE = "reduce", "Reduce"
    REMOVE = "remove", "Remove"


class ReviewItemState(models.TextChoices):
    PENDING = "pending", "To review"
    # A privileged item kept by one member of its own team: a second attester must agree.
    AWAITING_SECOND = "awaiting_second", "Needs a second attester"
    DECIDED = "decided", "Decided"
    REVOKED = "revoked", "Revoked (overdue)"


REVIEW_ITEM_STATES_OPEN = frozenset({ReviewItemState.PENDING, ReviewItemState.AWAITING_SECOND})


class AccessReviewItem(models.Model):
    """One identity in a campaign, as it was when the campaign opened: owning team, roles and
    scopes (`roles`: [{"role", "scope", "privileged"}]). Written in bulk when the campaign
    opens; its decision is the outcome of its attestations."""

    State = ReviewItemState
    Decision = ReviewDecision

    campaign = models.ForeignKey(
        AccessReviewCampaign, on_delete=models.PROTECT, related_name="items"
    )
    identity = models.ForeignKey(Identity, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    identity_name = models.CharField(max_length=128)
    roles = models.JSONField(default=list, blank=True)
    privileged = models.BooleanField(default=False)
    state = models.CharField(
        max_length=16, choices=ReviewItemState.choices, default=ReviewItemState.PENDING
    )
    decision = models.CharField(max_length=16, choices=ReviewDecision.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The decommission request a "remove" filed.
    follow_up_request = models.ForeignKey(
        "identities.IdentityRequest",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        ordering = ["campaign", "identity_name", "id"]
        indexes = [
            models.Index(fields=["campaign", "team", "state"], name="reviewitem_team_state"),
            models.Index(fields=["campaign", "state"], name="reviewitem_state"),
            # The campaign page's pages, in name order (a LIMIT 25 walks it instead of sorting).
            models.Index(fields=["campaign", "identity_name", "id"], name="reviewitem_by_name"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "identity"], name="reviewitem_unique"),
            models.CheckConstraint(
                condition=Q(state__in=ReviewItemState.values), name="reviewitem_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(decision="") | Q(decision__in=ReviewDecision.values),
                name="reviewitem_decision_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.identity_name} in review #{self.campaign_id}"

    @property
    def overdue(self) -> bool:
        return self.state in REVIEW_ITEM_STATES_OPEN and self.campaign.due_at < timezone.now()


class AccessReviewAttestation(models.Model):
    """One person's attestation of one item, with the audit row that records it (the evidence
    export carries that row's id and hash, so an auditor can find it on the chain)."""

    item = models.ForeignKey(
        AccessReviewItem, on_delete=models.PROTECT, related_name="attestations"
    )
    attester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=16, choices=ReviewDecision.choices)
    comment = models.TextField(blank=True)
    # Attested as security (an approver outside the owning team), not as the team.
    as_security = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    audit_event = models.OneToOneField(
        "identities.AuditEvent", on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "attester"], name="attestation_one_each"),
            models.CheckConstraint(
                condition=Q(decision__in=ReviewDecision.values),
                name="attestation_decision_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.attester} {self.decision} on item {self.item_id}"


class TransferStatus(models.TextChoices):
    AWAITING_CONSENT = "awaiting_consent", "Waiting for the receiving team"
    AWAITING_APPROVAL = "awaiting_approval", "Waiting for security"
    COMPLETED = "completed", "Completed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


TRANSFER_STATUSES_OPEN = frozenset(
    {TransferStatus.AWAITING_CONSENT, TransferStatus.AWAITING_APPROVAL}
)


class OwnershipTransfer(models.Model):
    """Moving an identity to another team: asked by its team, consented by the receiving team,
    approved by security; then the identity's team and its Azure `team` tag change."""

    Status = TransferStatus

    identity = models.ForeignKey(Identity, on_delete=models.PROTECT, related_name="transfers")
    from_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    to_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    justification = models.TextField()
    status = models.CharField(
        max_length=20, choices=TransferStatus.choices, default=TransferStatus.AWAITING_CONSENT
    )
    consented_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=TransferStatus.values), name="transfer_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(from_team=models.F("to_team")), name="transfer_to_another_team"
            ),
            # One open transfer per identity.
            models.UniqueConstraint(
                fields=["identity"],
                condition=Q(status__in=["awaiting_consent", "awaiting_approval"]),
                name="transfer_one_open",
            ),
        ]

    def __str__(self) -> str:
        return f"transfer #{self.pk} {self.identity} {self.from_team} → {self.to_team}"
