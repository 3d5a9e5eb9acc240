"""What an approver reads about each requested role's scope: who owns it, whether Azure has it,
whether it is cross-team or protected, and the risk that follows.

Pure, like the checks: it reads the same `PolicyContext` the policy was judged with (so the
existence answer is the policy's own cached Resource Graph lookup, never a second call) and the
findings the policy gave each role.
"""

from __future__ import annotations

from dataclasses import dataclass

from identities.policy import HIGH_RISK_RULES
from identities.policy.types import PolicyContext, PolicyResult, RequestDraft
from identities.scopes import ScopeError, parse_scope

# Existence, as the approver reads it.
EXISTS = "exists"
NOT_FOUND = "not_found"
UNVERIFIED = "unverified"
UNCHECKED = "unchecked"


@dataclass(frozen=True)
class ScopeContext:
    """One requested role on its scope, explained."""

    role: str
    scope: str
    owner: str  # a sentence: "resource group of team payments", "owned by no team", ...
    existence: str  # EXISTS, NOT_FOUND, UNVERIFIED or UNCHECKED
    existence_note: str  # the same in words, with why it could not be checked
    cross_team: str  # the other team that must approve too ("" = none)
    protected: bool
    risk: str  # "blocked", "high", "medium" or "low"
    reasons: tuple[str, ...]  # the policy findings on this role that drove `risk`


def scope_contexts(
    draft: RequestDraft, context: PolicyContext, result: PolicyResult
) -> list[ScopeContext]:
    """One ScopeContext per role in `draft.roles`, in order."""
    return [
        _scope_context(index, role.role, role.scope, draft, context, result)
        for index, role in enumerate(draft.roles)
    ]


def _scope_context(
    index: int,
    role: str,
    scope: str,
    draft: RequestDraft,
    context: PolicyContext,
    result: PolicyResult,
) -> ScopeContext:
    prefix = f"roles[{index}]"
    violations = [v for v in result.violations if v.field.startswith(prefix)]
    warnings = [w for w in result.warnings if w.field.startswith(prefix)]
    rules = {finding.rule for finding in (*violations, *warnings)}
    cross_team = _other_owner(scope, draft.team, context) if "cross_team_scope" in rules else ""
    if violations:
        risk = "blocked"
        reasons = tuple(v.message for v in violations)
    elif rules & HIGH_RISK_RULES:
        risk = "high"
        reasons = tuple(w.message for w in warnings if w.rule in HIGH_RISK_RULES)
    elif warnings:
        risk = "medium"
        reasons = tuple(w.message for w in warnings)
    else:
        risk = "low"
        reasons = ("Inside the team's own scope, not privileged, and it exists.",)
    existence, existence_note = _existence(scope, context)
    return ScopeContext(
        role=role,
        scope=scope,
        owner=_owner(scope, draft.team, context),
        existence=existence,
        existence_note=existence_note,
        cross_team=cross_team,
        protected="protected_scope" in rules,
        risk=risk,
        reasons=reasons,
    )


def _owner(scope: str, team: str, context: PolicyContext) -> str:
    try:
        parsed = parse_scope(scope)
    except ScopeError:
        return "unknown: the scope is not a valid resource id"
    if parsed.resource_group_id is None:
        return "a whole subscription: no team owns it"
    group_owner = context.scope_owners.get(parsed.resource_group_id.lower())
    tag_owner = context.tag_owners.get(parsed.existence_id.lower())
    parts = []
    if group_owner == team:
        parts.append(f"resource group of team {team} (the requesting team)")
    elif group_owner is not None:
        parts.append(f"resource group of team {group_owner}")
    if tag_owner is not None:
        whose = " (the requesting team)" if tag_owner == team else ""
        parts.append(f"tagged {context.ownership_tag}={tag_owner}{whose}")
    if not parts:
        return f"unowned: no team owns resource group {parsed.resource_group!r} or tags it"
    return "; ".join(parts)


def _other_owner(scope: str, team: str, context: PolicyContext) -> str:
    """The other team owning the scope, by its tag first, as `Checks.check_owner` judges it."""
    parsed = parse_scope(scope)  # parsed already, or the policy would not call it cross-team
    group = parsed.resource_group_id
    group_owner = context.scope_owners.get(group.lower()) if group else None
    tag_owner = context.tag_owners.get(parsed.existence_id.lower())
    if tag_owner is not None and tag_owner not in (group_owner, team):
        return tag_owner
    if group_owner is not None and group_owner != team:
        return group_owner
    return ""


def _existence(scope: str, context: PolicyContext) -> tuple[str, str]:
    if context.scope_lookup_error:
        return UNVERIFIED, f"could not be checked in Azure ({context.scope_lookup_error[:200]})"
    if context.existing_scopes is None:
        return UNCHECKED, "not checked (the existence check is off)"
    try:
        parsed = parse_scope(scope)
    except ScopeError:
        return UNCHECKED, "not checked (not a valid resource id)"
    cluster = context.cluster
    if cluster is not None and parsed.subscription_id not in cluster.allowed_scope_subscriptions:
        return UNCHECKED, "not checked (subscription not allowed for the cluster)"
    if parsed.existence_id.lower() in context.existing_scopes:
        return EXISTS, "exists in Azure"
    return NOT_FOUND, f"not found in Azure ({parsed.existence_id})"
