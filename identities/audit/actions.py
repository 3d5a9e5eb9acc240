"""Every audit action, named once (Zulip's RealmAuditLog constants): writers and readers use the
members, so searching for `AuditAction.REQUEST_APPROVED` finds who writes it and who reads it.

The values are the strings stored in `AuditEvent.action` and hashed into the chain; they never
change. A new kind of event is a new member here.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    # Identity requests (lifecycle transitions, then what happens to them along the way).
    REQUEST_CREATED = "identity_request.created"
    REQUEST_APPROVAL_RECORDED = "identity_request.approval_recorded"  # first of two approvals
    REQUEST_APPROVED = "identity_request.approved"
    REQUEST_REJECTED = "identity_request.rejected"
    # Changes requested instead of a rejection: sent back, edited, resubmitted as a revision.
    REQUEST_SENT_BACK = "identity_request.sent_back"
    REQUEST_REVISED = "identity_request.revised"
    REQUEST_RESUBMITTED = "identity_request.resubmitted"
    REQUEST_CANCELLED = "identity_request.cancelled"
    REQUEST_PROVISIONING = "identity_request.provisioning"
    REQUEST_REQUEUED = "identity_request.requeued"
    REQUEST_READY = "identity_request.ready"
    REQUEST_FAILED = "identity_request.failed"
    # Verification of the federation (one per outcome, plus the request for one).
    VERIFICATION_REQUESTED = "identity_request.verification_requested"
    VERIFICATION_WORKS = "identity_request.verification_works"
    VERIFICATION_PROPAGATING = "identity_request.verification_propagating"
    VERIFICATION_FAILED = "identity_request.verification_failed"
    VERIFICATION_INCONCLUSIVE = "identity_request.verification_inconclusive"
    # Identities.
    IDENTITY_CREATED = "identity.created"
    IDENTITY_PROVISIONING = "identity.provisioning"
    IDENTITY_READY = "identity.ready"
    IDENTITY_FAILED = "identity.failed"
    IDENTITY_DECOMMISSIONING = "identity.decommissioning"
    IDENTITY_DECOMMISSIONED = "identity.decommissioned"
    # A change request's delta committed as desired state (approval), then written (ready).
    IDENTITY_ROLES_CHANGING = "identity.roles_changing"
    IDENTITY_ROLES_CHANGED = "identity.roles_changed"
    # Time-bound access: the owning team reminded of an end, a role assignment past its end
    # marked for removal, an identity past its end sent to decommission (one row each).
    IDENTITY_ACCESS_EXPIRING = "identity.access_expiring"
    IDENTITY_ROLE_EXPIRED = "identity.role_expired"
    IDENTITY_EXPIRED = "identity.expired"
    IDENTITY_REPAIR_REQUESTED = "identity.repair_requested"
    IDENTITY_DRIFT_DETECTED = "identity.drift_detected"
    IDENTITY_DRIFT_CLEARED = "identity.drift_cleared"
    IDENTITY_TEAM_CHANGED = "identity.team_changed"  # an ownership transfer completed
    # Access reviews: one row per campaign opened (item count + snapshot hash), per attestation,
    # per escalation sweep of a campaign, per item revoked when overdue, per campaign closed.
    ACCESS_REVIEW_OPENED = "access_review.opened"
    ACCESS_REVIEW_ATTESTED = "access_review.attested"
    ACCESS_REVIEW_ESCALATED = "access_review.escalated"
    ACCESS_REVIEW_REVOKED = "access_review.revoked"
    ACCESS_REVIEW_CLOSED = "access_review.closed"
    # Ownership transfers of an identity to another team.
    TRANSFER_REQUESTED = "ownership_transfer.requested"
    TRANSFER_CONSENTED = "ownership_transfer.consented"
    TRANSFER_APPROVED = "ownership_transfer.approved"
    TRANSFER_REJECTED = "ownership_transfer.rejected"
    TRANSFER_CANCELLED = "ownership_transfer.cancelled"
    # Azure writes the workers made (each with its x-ms-request-id).
    AZURE_IDENTITY_CREATED = "azure.identity.created"
    AZURE_IDENTITY_UPDATED = "azure.identity.updated"
    AZURE_IDENTITY_DELETED = "azure.identity.deleted"
    AZURE_FIC_CREATED = "azure.federated_credential.created"
    AZURE_FIC_UPDATED = "azure.federated_credential.updated"
    AZURE_FIC_DELETED = "azure.federated_credential.deleted"
    AZURE_ROLE_ASSIGNMENT_CREATED = "azure.role_assignment.created"
    AZURE_ROLE_ASSIGNMENT_UPDATED = "azure.role_assignment.updated"
    AZURE_ROLE_ASSIGNMENT_ADOPTED = "azure.role_assignment.adopted"  # RoleAssignmentExists
    AZURE_ROLE_ASSIGNMENT_DELETED = "azure.role_assignment.deleted"
    AZURE_ROLE_ASSIGNMENT_DELETED_EXTRA = "azure.role_assignment.deleted_extra"
    # The engine refused a role assignment write: the scope it was to send is not the approved
    # canonical one, or Azure answered with another scope (nothing retried).
    AZURE_ROLE_ASSIGNMENT_REFUSED = "azure.role_assignment.refused"
    # AZURE_TIME_BOUND_ASSIGNMENTS: Azure refused a time-bound (schedule request) assignment by
    # policy, so a plain one was made; the portal's sweep still removes it at its end.
    AZURE_ROLE_ASSIGNMENT_SCHEDULE_FALLBACK = "azure.role_assignment.schedule_fallback"
    # AZURE_TIME_BOUND_ASSIGNMENTS: a renewal moved the end Azure enforces (an AdminExtend of a
    # live time-bound assignment, or an AdminRenew of one Azure ended) ...
    AZURE_ROLE_ASSIGNMENT_EXTENDED = "azure.role_assignment.extended"
    # ... or could not: nothing time-bound in Azure to extend (a plain assignment) or a policy
    # refused it; the portal's sweep enforces the new end alone.
    AZURE_ROLE_ASSIGNMENT_NOT_EXTENDED = "azure.role_assignment.not_extended"
    # The portal removed the client-id annotation it had applied to a ServiceAccount of a
    # decommissioned identity (server-side apply without the field).
    KUBE_SERVICE_ACCOUNT_RELEASED = "kubernetes.service_account.released"
    # The audit chain's own checks.
    CHAIN_CHECK_REQUESTED = "audit.chain_check_requested"
    CHAIN_CHECK_PASSED = "audit.chain_check_passed"
    CHAIN_CHECK_FAILED = "audit.chain_check_failed"
    CHAIN_CHECK_ERROR = "audit.chain_check_error"
    # A signed checkpoint of the chain appended to the write-once sink outside the database.
    CHAIN_ANCHORED = "audit.anchored"
    # People, tokens and configuration.
    USER_ROLE_GRANTED = "user.role_granted"
    USER_ROLE_REVOKED = "user.role_revoked"
    USER_DIRECTORY_SYNCED = "user.directory_synced"
    USER_SSO_LINKED = "user.sso_linked"
    USER_LOGIN_LOCKED_OUT = "user.login_locked_out"
    USER_LOGIN_UNLOCKED = "user.login_unlocked"
    # An account changed in the Django admin: created, its flags (superuser, staff, active),
    # its other groups or permissions, its password set (role groups: user.role_granted/revoked).
    USER_ACCOUNT_CHANGED = "user.account_changed"
    NOTIFICATION_PREFERENCES_UPDATED = "notification.preferences_updated"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_UPDATED = "webhook.updated"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated"  # noqa: S105 (an event name, not a secret)
    WEBHOOK_REDELIVERED = "webhook.redelivered"
    WEBHOOK_DISABLED = "webhook.disabled"
    # Every stored signing secret encrypted again with the first of FIELD_ENCRYPTION_KEYS.
    WEBHOOK_SECRETS_REENCRYPTED = "webhook.secrets_reencrypted"
    API_TOKEN_CREATED = "api_token.created"  # noqa: S105 (an event name, not a secret)
    API_TOKEN_REVOKED = "api_token.revoked"  # noqa: S105 (an event name, not a secret)
    # Machines of a team: its service principals, the OIDC trust rules that let a CI system's
    # own token act as one, the team's service tokens, and every OIDC token refused.
    SERVICE_PRINCIPAL_CREATED = "service_principal.created"
    TRUST_RULE_CREATED = "trust_rule.created"
    TRUST_RULE_DISABLED = "trust_rule.disabled"
    SERVICE_TOKEN_CREATED = "service_token.created"  # noqa: S105 (an event name, not a secret)
    SERVICE_TOKEN_REVOKED = "service_token.revoked"  # noqa: S105 (an event name, not a secret)
    OIDC_TOKEN_REFUSED = "oidc_token.refused"  # noqa: S105 (an event name, not a secret)
    TEAM_CREATED = "team.created"
    TEAM_UPDATED = "team.updated"
    TEAM_DELETED = "team.deleted"
    TEAM_MEMBERSHIP_CREATED = "teammembership.created"
    TEAM_MEMBERSHIP_UPDATED = "teammembership.updated"
    TEAM_MEMBERSHIP_DELETED = "teammembership.deleted"
    CLUSTER_CREATED = "cluster.created"
    CLUSTER_UPDATED = "cluster.updated"
    CLUSTER_DELETED = "cluster.deleted"
    NAMESPACE_OWNERSHIP_CREATED = "namespaceownership.created"
    NAMESPACE_OWNERSHIP_UPDATED = "namespaceownership.updated"
    NAMESPACE_OWNERSHIP_DELETED = "namespaceownership.deleted"
    CATALOG_ROLE_CREATED = "catalogrole.created"
    CATALOG_ROLE_UPDATED = "catalogrole.updated"
    CATALOG_ROLE_DELETED = "catalogrole.deleted"
    RESOURCE_GROUP_OWNERSHIP_CREATED = "resourcegroupownership.created"
    RESOURCE_GROUP_OWNERSHIP_UPDATED = "resourcegroupownership.updated"
    RESOURCE_GROUP_OWNERSHIP_DELETED = "resourcegroupownership.deleted"


# Actions whose member follows from a value, looked up here so that every written action is a
# member (a KeyError, not a new string, when a status is added without its action).
VERIFICATION_OUTCOME_ACTIONS: dict[str, AuditAction] = {
    "works": AuditAction.VERIFICATION_WORKS,
    "propagating": AuditAction.VERIFICATION_PROPAGATING,
    "failed": AuditAction.VERIFICATION_FAILED,
    "inconclusive": AuditAction.VERIFICATION_INCONCLUSIVE,
}
CHAIN_CHECK_ACTIONS: dict[str, AuditAction] = {
    "passed": AuditAction.CHAIN_CHECK_PASSED,
    "failed": AuditAction.CHAIN_CHECK_FAILED,
    "error": AuditAction.CHAIN_CHECK_ERROR,
}
# A filter on the action on the left finds the rows of every action on the right. Every approval
# is an "approved" event to a person searching the log, but the first of a four-eyes request's two
# approvals is written as REQUEST_APPROVAL_RECORDED (the request stays pending). The stored values
# are hashed into the chain and never change, so the filter widens instead.
ACTION_FILTER_FAMILIES: dict[str, tuple[AuditAction, ...]] = {
    AuditAction.REQUEST_APPROVED: (
        AuditAction.REQUEST_APPROVED,
        AuditAction.REQUEST_APPROVAL_RECORDED,
    ),
}
# (model name, "created" | "updated" | "deleted") for the configuration services.
CONFIG_ACTIONS: dict[tuple[str, str], AuditAction] = {
    (model, verb): AuditAction(f"{model}.{verb}")
    for model in (
        "team",
        "teammembership",
        "cluster",
        "namespaceownership",
        "catalogrole",
        "resourcegroupownership",
    )
    for verb in ("created", "updated", "deleted")
}
