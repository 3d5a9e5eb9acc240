"""The domain's models; import them from here (`from identities.models import Identity`)."""

from identities.models.audit import (
    GENESIS_HASH,
    AuditChainCheck,
    AuditEvent,
    ChainCheckStatus,
    ChainCheckTrigger,
)
from identities.models.azure import (
    ChildStatus,
    DriftState,
    FederatedCredential,
    Identity,
    IdentityStatus,
    RoleAssignment,
)
from identities.models.notifications import (
    DeliveryStatus,
    EmailFrequency,
    Notification,
    NotificationChannel,
    NotificationEvent,
    NotificationPreference,
)
from identities.models.org import (
    CatalogRole,
    Cluster,
    NamespaceOwnership,
    ResourceGroupOwnership,
    Team,
    TeamMembership,
)
from identities.models.requests import (
    REQUEST_STATUSES_IN_FLIGHT,
    REQUEST_STATUSES_OPEN,
    REQUEST_STATUSES_TERMINAL,
    Approval,
    ApprovalDecision,
    IdentityRequest,
    RequestedRole,
    RequestKind,
    RequestStatus,
)

__all__ = [
    "GENESIS_HASH",
    "REQUEST_STATUSES_IN_FLIGHT",
    "REQUEST_STATUSES_OPEN",
    "REQUEST_STATUSES_TERMINAL",
    "Approval",
    "ApprovalDecision",
    "AuditChainCheck",
    "AuditEvent",
    "CatalogRole",
    "ChainCheckStatus",
    "ChainCheckTrigger",
    "ChildStatus",
    "Cluster",
    "DeliveryStatus",
    "DriftState",
    "EmailFrequency",
    "FederatedCredential",
    "Identity",
    "IdentityRequest",
    "IdentityStatus",
    "NamespaceOwnership",
    "Notification",
    "NotificationChannel",
    "NotificationEvent",
    "NotificationPreference",
    "RequestKind",
    "RequestStatus",
    "RequestedRole",
    "ResourceGroupOwnership",
    "RoleAssignment",
    "Team",
    "TeamMembership",
]
