"""The new-request form's live check: the policy verdict placed on the form's controls, and a
preview of exactly what approval would create, from the same naming and tag functions the
services use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from identities.models import CatalogRole, Cluster
from identities.naming import AUDIENCE, fic_name, fic_subject, uami_name
from identities.policy import PolicyResult, RequestDraft
from identities.tags import TAG_APPROVERS, TAG_REQUEST_ID, identity_tags
from identities.validators import is_dns1123_label, is_dns1123_subdomain
from web.forms import PlacedFinding, place_finding


@dataclass(frozen=True)
class RoleAssignmentPreview:
    role: str
    description: str
    scope: str
    privileged: bool
    known: bool


@dataclass(frozen=True)
class RequestPreview:
    """What approval of the draft would create in Azure (names are final, not guesses)."""

    identity_name: str
    resource_group: str
    subscription_id: str
    location: str
    fic_name: str
    fic_subject: str
    issuer: str
    audience: str
    role_assignments: list[RoleAssignmentPreview]
    tags: list[tuple[str, str]]
    missing: list[str] = field(default_factory=list)  # inputs still needed for the names


@dataclass(frozen=True)
class PolicyFeedback:
    violations: list[PlacedFinding]
    warnings: list[PlacedFinding]

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "field": placed.finding.field,
                "rule": placed.finding.rule,
                "message": placed.finding.message,
                "target": placed.dom_id,
                "label": placed.label,
                "blocking": placed.blocking,
            }
            for placed in [*self.violations, *self.warnings]
        ]


def policy_feedback(result: PolicyResult, *, role_rows: Sequence[int]) -> PolicyFeedback:
    return PolicyFeedback(
        violations=[
            place_finding(v, role_rows=role_rows, blocking=True) for v in result.violations
        ],
        warnings=[place_finding(w, role_rows=role_rows, blocking=False) for w in result.warnings],
    )


class _NoApprovals:
    def all(self) -> list[Any]:
        return []


def _draft_tags(draft: RequestDraft, cluster: Cluster, requester: Any) -> list[tuple[str, str]]:
    # identity_tags() reads a saved request; a stand-in with the same attributes lets the preview
    # show exactly the tags the service will compute, without duplicating the rules here.
    stand_in = SimpleNamespace(
        pk=None,
        app_name=draft.app_name,
        team=SimpleNamespace(name=draft.team),
        cluster=cluster,
        namespace=draft.namespace,
        service_account=draft.service_account,
        tags=dict(draft.tags),
        requester=requester,
        approvals=_NoApprovals(),
    )
    tags = identity_tags(cast(Any, stand_in))
    tags[TAG_REQUEST_ID] = "(assigned when filed)"
    tags[TAG_APPROVERS] = "(filled in on approval)"
    return sorted(tags.items(), key=lambda item: item[0].lower())


def request_preview(
    draft: RequestDraft,
    *,
    cluster: Cluster | None,
    catalog: Mapping[str, CatalogRole],
    requester: Any,
) -> RequestPreview | None:
    """None until a cluster is chosen; names show once their inputs are valid."""
    if cluster is None:
        return None
    missing = []
    if not is_dns1123_label(draft.namespace):
        missing.append("namespace")
    if not is_dns1123_subdomain(draft.service_account):
        missing.append("ServiceAccount")
    if not is_dns1123_label(draft.app_name):
        missing.append("app name")
    names_ready = not missing
    roles = []
    for requested in draft.roles:
        role = catalog.get(requested.role.strip().lower())
        roles.append(
            RoleAssignmentPreview(
                role=role.name if role else requested.role,
                description=role.description if role else "Not in the role catalog.",
                scope=requested.scope,
                privileged=bool(role and role.privileged),
                known=role is not None,
            )
        )
    return RequestPreview(
        identity_name=uami_name(
            cluster=cluster.name,
            namespace=draft.namespace,
            app_name=draft.app_name,
            service_account=draft.service_account,
        )
        if names_ready
        else "",
        resource_group=cluster.resource_group,
        subscription_id=cluster.subscription_id,
        location=cluster.location,
        fic_name=fic_name(
            cluster=cluster.name, namespace=draft.namespace, service_account=draft.service_account
        )
        if names_ready
        else "",
        fic_subject=fic_subject(draft.namespace, draft.service_account) if names_ready else "",
        issuer=cluster.oidc_issuer_url,
        audience=AUDIENCE,
        role_assignments=roles,
        tags=_draft_tags(draft, cluster, requester) if names_ready else [],
        missing=missing,
    )
