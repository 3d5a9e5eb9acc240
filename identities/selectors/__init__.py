"""Reads. Visibility is enforced here and nowhere else: requesters see their teams' objects;
approvers, auditors and admins see everything. Views and the API never filter by hand.

One module per subject; import from here. The audit trail's reads live beside it, in
`identities.audit.selectors`; the start page's figures are in
`identities.selectors.dashboard` (it reads the audit trail, so it is not re-exported here)."""

from identities.selectors.approvals import (
    RISK_LEVELS,
    ApprovalFilters,
    ApprovalQueueItem,
    approval_item,
    approval_queue,
    owner_approvals_waiting,
)
from identities.selectors.people import (
    catalog_roles,
    clusters_for,
    is_service_principal,
    is_team_member,
    may_act_for_team,
    namespaces_owned_by,
    stands_behind,
    teams_of,
)
from identities.selectors.policy import (
    catalog_facts,
    identity_request_draft,
    identity_request_policy,
    identity_request_review,
    policy_context_for,
    requested_roles,
)
from identities.selectors.requests import (
    WorkloadMatch,
    WorkloadOutcome,
    identities_visible_to,
    identity_get,
    identity_history,
    identity_request_content,
    identity_request_get,
    identity_requests_visible_to,
    request_revisions,
    revision_changes,
    role_change_diff,
    role_change_from_wanted,
    role_renewals,
    workload_match,
)
from identities.selectors.waiting import (
    RequestState,
    identity_request_state,
    identity_request_wait,
    state_of,
)

__all__ = [
    "RISK_LEVELS",
    "ApprovalFilters",
    "ApprovalQueueItem",
    "Dashboard",
    "RequestState",
    "WorkloadMatch",
    "WorkloadOutcome",
    "approval_item",
    "approval_queue",
    "catalog_facts",
    "catalog_roles",
    "clusters_for",
    "dashboard_for",
    "identities_visible_to",
    "identity_get",
    "identity_history",
    "identity_request_content",
    "identity_request_draft",
    "identity_request_get",
    "identity_request_policy",
    "identity_request_review",
    "identity_request_state",
    "identity_request_wait",
    "identity_requests_visible_to",
    "is_service_principal",
    "is_team_member",
    "may_act_for_team",
    "namespaces_owned_by",
    "owner_approvals_waiting",
    "policy_context_for",
    "request_revisions",
    "requested_roles",
    "revision_changes",
    "role_change_diff",
    "role_change_from_wanted",
    "role_renewals",
    "stands_behind",
    "state_of",
    "teams_of",
    "workload_match",
]
