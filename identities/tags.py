"""The Azure tags put on each identity: who asked, who approved, what it is for, plus the team's.

Computed here, applied by provisioning. Portal keys win over the team's; the policy engine
refuses team tags that would collide with them or push the total past Azure's limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from identities.validators import TAG_VALUE_MAX, TAGS_MAX, tag_key_problem

if TYPE_CHECKING:
    from identities.models import IdentityRequest

MANAGED_BY = "workload-identity-portal"

TAG_APP = "app"
TAG_TEAM = "team"
TAG_CLUSTER = "cluster"
TAG_NAMESPACE = "namespace"
TAG_SERVICE_ACCOUNT = "service-account"
TAG_REQUEST_ID = "request-id"
TAG_REQUESTER = "requester"
TAG_APPROVERS = "approvers"
TAG_MANAGED_BY = "managed-by"
PORTAL_TAG_KEYS = (
    TAG_APP,
    TAG_TEAM,
    TAG_CLUSTER,
    TAG_NAMESPACE,
    TAG_SERVICE_ACCOUNT,
    TAG_REQUEST_ID,
    TAG_REQUESTER,
    TAG_APPROVERS,
    TAG_MANAGED_BY,
)
# Azure tag names are case-insensitive.
RESERVED_TAG_KEYS = frozenset(key.lower() for key in PORTAL_TAG_KEYS)
TEAM_TAGS_MAX = TAGS_MAX - len(PORTAL_TAG_KEYS)


def _clip(value: object) -> str:
    return str(value)[:TAG_VALUE_MAX]


def identity_tags(
    identity_request: IdentityRequest, *, approvers: list[str] | None = None
) -> dict[str, str]:
    """The tags for the identity `identity_request` creates (approvals so far included).
    `approvers`: the usernames of its approvals in their order, when the caller holds them
    (the approval that completes the count); read from the request otherwise."""
    if approvers is None:
        approvers = [
            approval.approver.get_username()
            for approval in identity_request.approvals.all()
            if approval.decision == "approve"
        ]
    team_tags = {
        key: _clip(value)
        for key, value in (identity_request.tags or {}).items()
        if key.lower() not in RESERVED_TAG_KEYS and tag_key_problem(key) is None
    }
    # Defensive: policy already refuses more, but never hand Azure a set it would reject.
    team_tags = dict(list(team_tags.items())[:TEAM_TAGS_MAX])
    portal_tags = {
        TAG_APP: identity_request.app_name,
        TAG_TEAM: identity_request.team.name,
        TAG_CLUSTER: identity_request.cluster.name,
        TAG_NAMESPACE: identity_request.namespace,
        TAG_SERVICE_ACCOUNT: identity_request.service_account,
        TAG_REQUEST_ID: str(identity_request.pk),
        TAG_REQUESTER: identity_request.requester.get_username(),
        TAG_APPROVERS: ",".join(approvers),
        TAG_MANAGED_BY: MANAGED_BY,
    }
    return {**team_tags, **{key: _clip(value) for key, value in portal_tags.items()}}
