"""Output serializers shared by several views (input serializers are nested in their views).

They read only what the selectors select or prefetch, so a list costs the same number of
queries for 5 rows as for 50.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from identities.models import (
    ChildStatus,
    DriftState,
    IdentityRequest,
    IdentityStatus,
    RequestKind,
    RequestStatus,
    RoleChange,
)
from identities.selectors import request_revisions, role_change_diff
from identities.validators import FIC_LIMIT_PER_IDENTITY


class BlankAsNullCharField(serializers.CharField):
    """An output string that is null until it is known (ids Azure has not returned yet)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, allow_null=True, **kwargs)

    def to_representation(self, value: Any) -> str | None:  # type: ignore[override] # nullable
        return str(value) if value else None


# --- requests ------------------------------------------------------------------------------


class RequestedRoleOutput(serializers.Serializer):
    role = serializers.CharField(source="role.name", help_text="Catalog role name.")
    role_definition_guid = serializers.CharField(source="role.role_definition_guid")
    scope = serializers.CharField(help_text="ARM resource id the role is assigned on.")
    change = serializers.ChoiceField(
        choices=RoleChange.choices,
        help_text="change_roles requests: add, remove or keep; empty for the other kinds.",
    )
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Time-bound access: when the role ends; null = no end."
    )


class DiffRoleOutput(serializers.Serializer):
    role = serializers.CharField()
    role_definition_guid = serializers.CharField()
    scope = serializers.CharField()
    expires_at = serializers.DateTimeField(
        required=False, help_text="Present when the role has an end date."
    )


class RoleDiffOutput(serializers.Serializer):
    added = DiffRoleOutput(many=True)
    removed = DiffRoleOutput(many=True)
    unchanged = DiffRoleOutput(many=True)
    renewed = DiffRoleOutput(many=True, help_text="Kept with a new end date (a renewal).")


class ApprovalOutput(serializers.Serializer):
    approver = serializers.CharField(source="approver.username")
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()


class IdentitySummaryOutput(serializers.Serializer):
    """The identity a request created or targets; Azure's ids are null until provisioned."""

    id = serializers.IntegerField()
    name = serializers.CharField(help_text="The user-assigned managed identity's Azure name.")
    status = serializers.ChoiceField(choices=IdentityStatus.choices)
    client_id = BlankAsNullCharField(help_text="Goes into the ServiceAccount annotation.")
    principal_id = BlankAsNullCharField(help_text="Object id; role assignments name it.")
    tenant_id = BlankAsNullCharField()
    resource_id = BlankAsNullCharField(help_text="ARM resource id of the identity.")


class RevisionOutput(serializers.Serializer):
    number = serializers.IntegerField()
    sent_back_by = serializers.CharField()
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()
    content = serializers.DictField(help_text="What the revision asked for.")
    approvals = serializers.ListField(
        child=serializers.DictField(), help_text="The decisions it had collected."
    )
    changes_in_next = serializers.DictField(
        help_text="What the next revision changed: each field's from/to, roles added and dropped."
    )


class IdentityRequestOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=RequestKind.choices)
    status = serializers.ChoiceField(
        choices=RequestStatus.choices,
        help_text="pending → approved → provisioning → ready (or failed, then retry); "
        "pending → rejected or cancelled; pending → sent_back → pending (resubmitted).",
    )
    lifecycle_status = serializers.ChoiceField(
        choices=IdentityRequest.SHOWN_STATUS_CHOICES,
        source="shown_status",
        help_text="What the request page shows: `status`, except that a ready decommission "
        "request is `removed` and a ready request whose identity has since been decommissioned "
        "is `decommissioned`. `status` keeps the workflow's own value (it stays `ready`).",
    )
    app_name = serializers.CharField()
    team = serializers.CharField(source="team.name")
    cluster = serializers.CharField(source="cluster.name")
    namespace = serializers.CharField()
    service_account = serializers.CharField()
    justification = serializers.CharField()
    tags = serializers.DictField(child=serializers.CharField())
    is_exception = serializers.BooleanField()
    requester = serializers.CharField(source="requester.username")
    roles = RequestedRoleOutput(many=True)
    approvals = ApprovalOutput(many=True)
    approvals_required = serializers.IntegerField()
    last_error = serializers.CharField(help_text="Why provisioning failed; empty otherwise.")
    identity = IdentitySummaryOutput(allow_null=True)
    revision = serializers.IntegerField(help_text="1, then one more per resubmission.")
    identity_expires_at = serializers.DateTimeField(
        allow_null=True,
        help_text="new: the identity is decommissioned at this time; null = no end.",
    )
    revisions = serializers.SerializerMethodField(
        help_text="Earlier revisions, each sent back with a comment; empty when never sent back."
    )
    diff = serializers.SerializerMethodField(
        help_text="change_roles requests: the roles added, removed and unchanged; null for the "
        "other kinds."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(RevisionOutput(many=True))
    def get_revisions(self, identity_request: Any) -> list[dict[str, Any]]:
        return request_revisions(identity_request)  # from the prefetched revisions

    @extend_schema_field(RoleDiffOutput(allow_null=True))
    def get_diff(self, identity_request: Any) -> dict[str, list[dict[str, str]]] | None:
        if identity_request.kind != RequestKind.CHANGE_ROLES:
            return None
        return role_change_diff(identity_request)  # from the prefetched roles: no query


# --- identities ----------------------------------------------------------------------------


class FederatedCredentialOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    namespace = serializers.CharField()
    service_account = serializers.CharField()
    issuer = serializers.CharField()
    subject = serializers.CharField()
    audience = serializers.CharField()
    status = serializers.ChoiceField(choices=ChildStatus.choices)


class RoleAssignmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.CharField(source="role.name")
    role_definition_guid = serializers.CharField(source="role.role_definition_guid")
    scope = serializers.CharField()
    name = BlankAsNullCharField(help_text="The assignment's GUID in Azure, once created.")
    status = serializers.ChoiceField(choices=ChildStatus.choices)
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Removed by the expiry sweep at this time; null = no end."
    )


class FicUsageOutput(serializers.Serializer):
    used = serializers.IntegerField(help_text="Live federated credentials on the identity.")
    limit = serializers.IntegerField(help_text="Azure's limit per identity.")


class IdentityOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    team = serializers.CharField(source="team.name")
    cluster = serializers.CharField(source="cluster.name")
    app_name = serializers.CharField()
    status = serializers.ChoiceField(choices=IdentityStatus.choices)
    drift_state = serializers.ChoiceField(choices=DriftState.choices)
    drift_details = serializers.DictField()
    drift_checked_at = serializers.DateTimeField(allow_null=True)
    client_id = BlankAsNullCharField()
    principal_id = BlankAsNullCharField()
    tenant_id = BlankAsNullCharField()
    resource_id = BlankAsNullCharField()
    subscription_id = serializers.CharField()
    resource_group = serializers.CharField()
    location = serializers.CharField()
    tags = serializers.DictField(child=serializers.CharField())
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Decommissioned by the expiry sweep at this time; null = no end."
    )
    fic_usage = serializers.SerializerMethodField()
    federated_credentials = FederatedCredentialOutput(many=True)
    role_assignments = RoleAssignmentOutput(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(FicUsageOutput)
    def get_fic_usage(self, identity: Any) -> dict[str, int]:
        # From the prefetched credentials: no query per identity.
        used = sum(
            1 for fic in identity.federated_credentials.all() if fic.status != ChildStatus.REMOVED
        )
        return {"used": used, "limit": FIC_LIMIT_PER_IDENTITY}


# --- audit ---------------------------------------------------------------------------------


class AuditEventOutput(serializers.Serializer):
    id = serializers.IntegerField(help_text="Position in the hash chain.")
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(source="actor_label", help_text="Username, or 'system'.")
    actor_id = serializers.IntegerField(allow_null=True)
    action = serializers.CharField(help_text="e.g. identity_request.approved")
    identity_request = serializers.IntegerField(source="identity_request_id", allow_null=True)
    identity = serializers.IntegerField(source="identity_id", allow_null=True)
    # A declared field, not Serializer.data: the metaclass keeps the two apart.
    data = serializers.DictField()  # type: ignore[assignment]
    prev_hash = serializers.CharField()
    hash = serializers.CharField()
