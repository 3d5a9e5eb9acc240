"""Server-rendered pages of the portal. Views only call selectors and services (HackSoft
style); `presenters`, `preview` and `charts` shape what those return for the templates."""

from web.views.approvals import (
    approval_queue_page,
    request_approve,
    request_reject,
    request_send_back,
)
from web.views.audit import (
    audit_chain_progress,
    audit_chain_verify,
    audit_export,
    audit_log,
)
from web.views.home import home
from web.views.inventory import (
    identity_add_service_account,
    identity_change,
    identity_decommission,
    identity_detail,
    identity_list,
    identity_repair,
)
from web.views.notifications import (
    notification_inbox,
    notification_preferences,
    notification_read,
)
from web.views.pipelines import (
    pipelines,
    service_token_new,
    service_token_revoke_view,
    trust_rule_disable_view,
    trust_rule_new,
)
from web.views.request_form import request_check, request_new
from web.views.requests import (
    request_cancel,
    request_detail,
    request_list,
    request_manifests,
    request_progress,
    request_resubmit,
    request_retry,
    request_verify,
)
from web.views.resources import resource_search
from web.views.tokens import api_token_revoke_view, api_tokens
from web.views.webhooks import (
    webhook_delete,
    webhook_detail,
    webhook_list,
    webhook_redeliver_view,
    webhook_rotate,
    webhook_toggle,
)

__all__ = [
    "api_token_revoke_view",
    "api_tokens",
    "approval_queue_page",
    "audit_chain_progress",
    "audit_chain_verify",
    "audit_export",
    "audit_log",
    "home",
    "identity_add_service_account",
    "identity_change",
    "identity_decommission",
    "identity_detail",
    "identity_list",
    "identity_repair",
    "notification_inbox",
    "notification_preferences",
    "notification_read",
    "pipelines",
    "request_approve",
    "request_cancel",
    "request_check",
    "request_detail",
    "request_list",
    "request_manifests",
    "request_new",
    "request_progress",
    "request_reject",
    "request_resubmit",
    "request_retry",
    "request_send_back",
    "request_verify",
    "resource_search",
    "service_token_new",
    "service_token_revoke_view",
    "trust_rule_disable_view",
    "trust_rule_new",
    "webhook_delete",
    "webhook_detail",
    "webhook_list",
    "webhook_redeliver_view",
    "webhook_rotate",
    "webhook_toggle",
]
