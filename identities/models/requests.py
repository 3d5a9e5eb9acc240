"""Identity requests, the roles they ask for, and the approvals they collect."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from identities.models.org import CatalogRole, Cluster, Team


class RequestKind(models.TextChoices):
    NEW = "new", "New identity"
    ADD_SERVICE_ACCOUNT = "add_service_account", "Add a ServiceAccount"
    DECOMMISSION = "decommission", "Decommission"
    CHANGE_ROLES = "change_roles", "Change roles"


class RequestStatus(models.TextChoices):
    PENDING = "pending"
    # An approver asked for changes: the requester edits and resubmits (a new revision).
    SENT_BACK = "sent_back", "Sent back"
    APPROVED = "approved"
    PROVISIONING = "provisioning"
    READY = "ready"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


# The status groups every reader uses, defined once beside the status (as NetBox keeps
# TERMINAL_STATE_CHOICES on its status class). A failed request is open: it can be retried, and
# it still holds its ServiceAccount against a second request.
REQUEST_STATUSES_IN_FLIGHT = frozenset({RequestStatus.APPROVED, RequestStatus.PROVISIONING})
REQUEST_STATUSES_OPEN = frozenset(
    {RequestStatus.PENDING, RequestStatus.SENT_BACK, RequestStatus.FAILED}
    | REQUEST_STATUSES_IN_FLIGHT
)
REQUEST_STATUSES_TERMINAL = frozenset(
    {RequestStatus.READY, RequestStatus.REJECTED, RequestStatus.CANCELLED}
)


def shown_request_status(*, status: str, kind: str, identity_status: str | None) -> str:
    """The status a person reads, on the request page and in the API's `lifecycle_status`: a
    ready decommission request is "removed", and a ready request whose identity has since been
    decommissioned is "decommissioned" (not "ready"); otherwise the status itself."""
    if status != RequestStatus.READY:
        return str(status)
    if kind == RequestKind.DECOMMISSION:
        return "removed"
    if identity_status == "decommissioned":
        return "decommissioned"
    return str(status)


class IdentityRequest(models.Model):
    """A team's request for a new identity, another ServiceAccount on one of its identities, or
    the decommissioning of one. Status moves only through `identities.lifecycle`."""

    Kind = RequestKind
    Status = RequestStatus

    kind = models.CharField(max_length=32, choices=RequestKind.choices, default=RequestKind.NEW)
    app_name = models.CharField(max_length=63)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="identity_requests")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="identity_requests")
    namespace = models.CharField(max_length=63, blank=True)
    service_account = models.CharField("ServiceAccount", max_length=253, blank=True)
    justification = models.TextField()
    tags = models.JSONField(default=dict, blank=True)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="identity_requests"
    )
    status = models.CharField(
        max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    # Teams that own a scope of this request (other than the requesting team): each must approve
    # too, beside security (set from the policy when the request is filed).
    owner_teams = models.ManyToManyField(
        Team, related_name="requests_needing_owner_approval", blank=True
    )
    is_exception = models.BooleanField(
        default=False,
        help_text="Asks for something policy refuses by default (privileged role, broad scope); "
        "needs two distinct approvers.",
    )
    # Target identity for add_service_account/decommission; the created one for new.
    identity = models.ForeignKey(
        "identities.Identity",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="requests",
    )
    last_error = models.TextField(blank=True)
    # 1 when filed; each resubmission after a send-back is the next (RequestRevision keeps the
    # earlier ones).
    revision = models.PositiveIntegerField(default=1)
    # Time-bound access: decommission the identity at this time (a new request's own end).
    identity_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("approve_identityrequest", "Can approve or reject identity requests")]
        indexes = [
            models.Index(fields=["status", "created_at"], name="identityrequest_status"),
            # The policy's "other open requests for this ServiceAccount" count.
            models.Index(
                fields=["cluster", "namespace", "service_account"],
                condition=Q(status="pending"),
                name="identityrequest_pending_sa",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=RequestStatus.values),
                name="identityrequest_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=RequestKind.values), name="identityrequest_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["decommission", "change_roles"])
                | (~Q(namespace="") & ~Q(service_account="")),
                name="identityrequest_sa_unless_decommission",
            ),
            models.CheckConstraint(
                condition=Q(kind="new") | Q(identity__isnull=False),
                name="identityrequest_target_identity",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()} {self.app_name} ({self.status})"

    # What `shown_status` can be: a status, or one of the two words it uses for a ready request.
    SHOWN_STATUS_CHOICES = (
        *RequestStatus.choices,
        ("removed", "Removed"),
        ("decommissioned", "Decommissioned"),
    )

    @property
    def shown_status(self) -> str:
        """The status a person reads (`shown_request_status`). Reads `identity`, which the
        selectors fetch with the request."""
        identity = self.identity if self.identity_id is not None else None
        return shown_request_status(
            status=self.status,
            kind=self.kind,
            identity_status=identity.status if identity is not None else None,
        )

    @property
    def shown_status_label(self) -> str:
        if self.shown_status == str(self.status):
            return str(self.get_status_display())
        return self.shown_status.capitalize()

    @property
    def approvals_required(self) -> int:
        """Four eyes for exceptions, two for everything else (the requester counts as one)."""
        return 2 if self.is_exception else 1


class RoleChange(models.TextChoices):
    """What a change request does with one role on one scope; blank on the other kinds."""

    NONE = "", "Requested"
    ADD = "add", "Added"
    REMOVE = "remove", "Removed"
    # Held before the change and kept: recorded at filing, so the diff stays readable later.
    KEEP = "keep", "Unchanged"
    # Held and kept with a new end date (time-bound access: a renewal); no Azure write.
    RENEW = "renew", "Renewed"


class RequestedRole(models.Model):
    """One catalog role on one ARM scope, as asked for in a request (for a change request: one
    line of its diff, `change` saying whether it is added, removed or kept)."""

    Change = RoleChange

    identity_request = models.ForeignKey(
        IdentityRequest, on_delete=models.CASCADE, related_name="roles"
    )
    role = models.ForeignKey(CatalogRole, on_delete=models.PROTECT, related_name="+")
    scope = models.CharField(max_length=1024)
    change = models.CharField(max_length=8, choices=RoleChange.choices, default="", blank=True)
    # Time-bound access: the role is removed at this time (None = until removed).
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                "identity_request", "role", Lower("scope"), name="requestedrole_unique"
            ),
            models.CheckConstraint(
                condition=Q(change__in=RoleChange.values), name="requestedrole_change_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} on {self.scope}"


class ApprovalDecision(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"


# What a decision reads as ("rejected"), never the value with a "d" glued on ("rejectd").
DECISION_PAST_TENSE = {ApprovalDecision.APPROVE: "approved", ApprovalDecision.REJECT: "rejected"}


class Approval(models.Model):
    """One approver's decision on one request (at most one each)."""

    Decision = ApprovalDecision

    identity_request = models.ForeignKey(
        IdentityRequest, on_delete=models.CASCADE, related_name="approvals"
    )
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals"
    )
    decision = models.CharField(max_length=16, choices=ApprovalDecision.choices)
    # Set when the decision was made for a team that owns a scope of the request (an owner's
    # approval), not as security's.
    on_behalf_of = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["identity_request", "approver"], name="approval_one_per_approver"
            ),
            models.CheckConstraint(
                condition=Q(decision__in=ApprovalDecision.values), name="approval_decision_valid"
            ),
        ]

    def __str__(self) -> str:
        decided = DECISION_PAST_TENSE[ApprovalDecision(self.decision)]
        return f"{self.approver} {decided} #{self.identity_request_id}"


class RequestRevision(models.Model):
    """An earlier revision of a request, kept when an approver sent it back: what it asked for
    then (`content`, as the audit trail describes a request), the decisions it had collected,
    and the approver's comment."""

    identity_request = models.ForeignKey(
        IdentityRequest, on_delete=models.CASCADE, related_name="revisions"
    )
    number = models.PositiveIntegerField()
    content = models.JSONField()
    approvals = models.JSONField(default=list, blank=True)
    sent_back_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    comment = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(
                fields=["identity_request", "number"], name="requestrevision_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.identity_request_id} revision {self.number}"
