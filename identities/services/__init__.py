"""The domain's writers (HackSoft style): every state change goes through one of these, in a
transaction that also writes its audit row. Import from here: `from identities.services import
identity_request_approve`."""

from identities.audit.checks import (
    audit_chain_check_enqueue_failed,
    audit_chain_check_run,
    audit_chain_check_start,
)
from identities.services.config import (
    config_object_delete,
    config_object_save,
    namespace_grant,
    team_member_add,
    team_member_remove,
    user_directory_sync,
    user_role_grant,
    user_role_revoke,
)
from identities.services.expiry import (
    access_expiry_remind,
    identities_expire,
    identity_expire,
    role_assignments_expire,
)
from identities.services.notifications import (
    notification_preference_save,
    notifications_mark_read,
    notifications_record,
)
from identities.services.requests import (
    identity_request_approve,
    identity_request_cancel,
    identity_request_change_create,
    identity_request_create,
    identity_request_decommission_create,
    identity_request_ensure,
    identity_request_reject,
    identity_request_retry,
)
from identities.services.reviews import (
    access_review_attest,
    access_review_close,
    access_review_open,
    access_reviews_escalate_overdue,
    access_reviews_revoke_overdue,
)
from identities.services.revisions import (
    identity_request_resubmit,
    identity_request_revise,
    identity_request_send_back,
)
from identities.services.transfers import (
    ownership_transfer_approve,
    ownership_transfer_cancel,
    ownership_transfer_consent,
    ownership_transfer_reject,
    ownership_transfer_request,
)
from identities.services.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_disable,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
    webhook_redeliver,
)
from identities.services.worker import (
    identity_request_mark_failed,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
)

__all__ = [
    "access_expiry_remind",
    "access_review_attest",
    "access_review_close",
    "access_review_open",
    "access_reviews_escalate_overdue",
    "access_reviews_revoke_overdue",
    "audit_chain_check_enqueue_failed",
    "audit_chain_check_run",
    "audit_chain_check_start",
    "config_object_delete",
    "config_object_save",
    "identities_expire",
    "identity_expire",
    "identity_request_approve",
    "identity_request_cancel",
    "identity_request_change_create",
    "identity_request_create",
    "identity_request_decommission_create",
    "identity_request_ensure",
    "identity_request_mark_failed",
    "identity_request_mark_provisioning",
    "identity_request_mark_ready",
    "identity_request_reject",
    "identity_request_resubmit",
    "identity_request_retry",
    "identity_request_revise",
    "identity_request_send_back",
    "namespace_grant",
    "notification_preference_save",
    "notifications_mark_read",
    "notifications_record",
    "ownership_transfer_approve",
    "ownership_transfer_cancel",
    "ownership_transfer_consent",
    "ownership_transfer_reject",
    "ownership_transfer_request",
    "role_assignments_expire",
    "team_member_add",
    "team_member_remove",
    "user_directory_sync",
    "user_role_grant",
    "user_role_revoke",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_endpoint_disable",
    "webhook_endpoint_rotate_secret",
    "webhook_endpoint_update",
    "webhook_redeliver",
]
