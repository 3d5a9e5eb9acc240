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

    def to_representation(self, instance: Any) -> dict[str, Any]:
        """The fields declared above, written out by hand in their order. DRF's generic walk (a
        get_attribute and a to_representation per field, nested serializers alike) was ten
        times this at 25 rows a page and the API's largest cost beyond the bare view's; the
        declarations stay the schema, and a test pins this output to the generic walk's for
        every kind of request. Datetimes and choices go through their declared fields, so
        time zone, format and choice mapping are DRF's own."""
        # The declared fields themselves (not self.fields, a deep copy made per serializer).
        fields = self._declared_fields
        moment = fields["created_at"].to_representation
        role_change = RequestedRoleOutput._declared_fields["change"].to_representation
        decision = ApprovalOutput._declared_fields["decision"].to_representation
        identity_status = IdentitySummaryOutput._declared_fields["status"].to_representation
        identity = instance.identity
        tags = instance.tags
        expires = instance.identity_expires_at
        return {
            "id": int(instance.id),
            "kind": fields["kind"].to_representation(instance.kind),
            "status": fields["status"].to_representation(instance.status),
            "lifecycle_status": fields["lifecycle_status"].to_representation(instance.shown_status),
            "app_name": str(instance.app_name),
            "team": str(instance.team.name),
            "cluster": str(instance.cluster.name),
            "namespace": str(instance.namespace),
            "service_account": str(instance.service_account),
            "justification": str(instance.justification),
            "tags": None
            if tags is None
            else {str(k): None if v is None else str(v) for k, v in tags.items()},
            "is_exception": bool(instance.is_exception),
            "requester": str(instance.requester.username),
            "roles": [
                {
                    "role": str(requested.role.name),
                    "role_definition_guid": str(requested.role.role_definition_guid),
                    "scope": str(requested.scope),
                    "change": role_change(requested.change),
                    "expires_at": None
                    if requested.expires_at is None
                    else moment(requested.expires_at),
                }
                for requested in instance.roles.all()
            ],
            "approvals": [
                {
                    "approver": str(approval.approver.username),
                    "decision": decision(approval.decision),
                    "comment": str(approval.comment),
                    "created_at": moment(approval.created_at),
                }
                for approval in instance.approvals.all()
            ],
            "approvals_required": int(instance.approvals_required),
            "last_error": str(instance.last_error),
            "identity": None
            if identity is None
            else {
                "id": int(identity.id),
                "name": str(identity.name),
                "status": identity_status(identity.status),
                "client_id": str(identity.client_id) if identity.client_id else None,
                "principal_id": str(identity.principal_id) if identity.principal_id else None,
                "tenant_id": str(identity.tenant_id) if identity.tenant_id else None,
                "resource_id": str(identity.resource_id) if identity.resource_id else None,
            },
            "revision": int(instance.revision),
            "identity_expires_at": None if expires is None else moment(expires),
            "revisions": self.get_revisions(instance),
            "diff": self.get_diff(instance),
            "created_at": moment(instance.created_at),
            "updated_at": moment(instance.updated_at),
        }

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
