"""A request checked as filing would check it, without filing it: the policy's findings, the
approvals it would need and what approval would create (names and manifests). A read: it writes
nothing, not even an audit row (nothing changed; the filing itself is audited)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from identities import roles
from identities.errors import DomainError, PermissionDeniedError
from identities.manifests import (
    PUBLIC_CLOUD_AUTHORITY,
    HandoverSpec,
    InvalidHandoverSpec,
    RoleAssignmentSpec,
)
from identities.models import CatalogRole, Cluster, Identity, RequestKind, Team
from identities.naming import AUDIENCE, fic_name, fic_subject, uami_name
from identities.policy import (
    PolicyResult,
    RequestDraft,
    RiskSummary,
    evaluate_request,
    risk_summary,
)
from identities.scopes import canonical_scope
from identities.selectors.people import is_team_member
from identities.selectors.policy import policy_context_for
from identities.validators import canonical_arm_id

# Azure assigns these when the identity is created; the preview shows where they go.
PLACEHOLDER_GUID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_FIELDS = ("client_id", "principal_id", "tenant_id")


@dataclass(frozen=True)
class DraftCheck:
    """A draft as filing judges it: completed (an added ServiceAccount joins its identity's app
    and team), its team, and the policy's result."""

    draft: RequestDraft
    team: Team | None
    result: PolicyResult


def draft_check(*, requester: Any, draft: RequestDraft) -> DraftCheck:
    """What `identity_request_create` checks before it writes, in the same order. Raises
    DomainError for a decommission draft and PermissionDeniedError for a non-requester or a
    team the requester is not on; policy violations are in the result, not raised."""
    if draft.kind == RequestKind.DECOMMISSION:
        raise DomainError("File decommission requests with identity_request_decommission_create.")
    if not roles.is_requester(requester):
        raise PermissionDeniedError("Only requesters can file identity requests.")
    if draft.kind == RequestKind.ADD_SERVICE_ACCOUNT and draft.identity_id is not None:
        target = Identity.objects.select_related("team").filter(pk=draft.identity_id).first()
        if target is not None:
            draft = dataclasses.replace(
                draft, team=draft.team or target.team.name, app_name=target.app_name
            )
    team = Team.objects.filter(name=draft.team).first() if draft.team else None
    if team is not None and not is_team_member(requester, team):
        raise PermissionDeniedError(
            f"{requester.get_username()} is not a member of team {team.name!r}."
        )
    return DraftCheck(
        draft=draft, team=team, result=evaluate_request(draft, policy_context_for(draft))
    )


@dataclass(frozen=True)
class DryRun:
    """The verdict on a draft: findings, the approvals filing would need, and (when the policy
    passes) the spec of what approval would create, Azure-assigned ids as placeholders."""

    draft: RequestDraft
    result: PolicyResult
    risk: RiskSummary
    approvals_required: int
    owner_teams: tuple[str, ...]
    preview: HandoverSpec | None


def identity_request_dry_run(*, requester: Any, draft: RequestDraft) -> DryRun:
    checked = draft_check(requester=requester, draft=draft)
    result = checked.result
    return DryRun(
        draft=checked.draft,
        result=result,
        risk=risk_summary(checked.draft, result),
        # As IdentityRequest.approvals_required: four eyes for exceptions.
        approvals_required=2 if checked.draft.is_exception else 1,
        owner_teams=tuple(result.owner_teams),
        preview=_preview(checked.draft) if result.ok else None,
    )


def _preview(draft: RequestDraft) -> HandoverSpec | None:
    cluster = Cluster.objects.filter(name=draft.cluster).first()
    if cluster is None:  # the policy refuses an unknown cluster; kept for the type checker
        return None
    target = None
    if draft.kind == RequestKind.ADD_SERVICE_ACCOUNT and draft.identity_id is not None:
        target = Identity.objects.filter(pk=draft.identity_id).first()
    identity_name = (
        target.name
        if target is not None
        else uami_name(
            cluster=cluster.name,
            namespace=draft.namespace,
            app_name=draft.app_name,
            service_account=draft.service_account,
        )
    )
    catalog = {role.name.lower(): role for role in CatalogRole.objects.all()}
    catalog.update({role.role_definition_guid.lower(): role for role in catalog.values()})
    assignments = []
    for requested in draft.roles:
        role = catalog.get(requested.role.strip().lower())
        if role is None:  # the policy refuses unknown roles; kept for the type checker
            continue
        assignments.append(
            RoleAssignmentSpec(
                role_name=role.name,
                role_definition_guid=role.role_definition_guid,
                scope=canonical_arm_id(canonical_scope(requested.scope)),
                name=PLACEHOLDER_GUID,
            )
        )
    authority = PUBLIC_CLOUD_AUTHORITY
    if settings.AZURE_MODE == "azure":
        authority = settings.AZURE_AUTHORITY_HOST.rstrip("/") + "/"
    subscription = target.subscription_id if target else cluster.subscription_id
    resource_group = target.resource_group if target else cluster.resource_group
    try:
        return HandoverSpec(
            app_name=draft.app_name,
            namespace=draft.namespace,
            service_account=draft.service_account,
            client_id=PLACEHOLDER_GUID,
            tenant_id=PLACEHOLDER_GUID,
            principal_id=PLACEHOLDER_GUID,
            identity_name=identity_name,
            identity_resource_id=canonical_arm_id(
                f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
                f"Microsoft.ManagedIdentity/userAssignedIdentities/{identity_name}"
            ),
            subscription_id=subscription,
            resource_group=resource_group,
            location=target.location if target else cluster.location,
            cluster_name=cluster.name,
            cluster_resource_group=cluster.aks_resource_group,
            oidc_issuer_url=cluster.oidc_issuer_url,
            fic_name=fic_name(
                cluster=cluster.name,
                namespace=draft.namespace,
                service_account=draft.service_account,
            ),
            fic_subject=fic_subject(draft.namespace, draft.service_account),
            audience=AUDIENCE,
            role_assignments=tuple(assignments),
            tags={str(k): str(v) for k, v in draft.tags.items()},
            authority_host=authority,
        )
    except InvalidHandoverSpec:
        return None  # the policy passed names the hand-over refuses: no preview, not an error
