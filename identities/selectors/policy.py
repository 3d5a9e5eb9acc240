"""The facts the policy engine judges a draft against, gathered from the database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from identities import scope_lookup
from identities.models import (
    REQUEST_STATUSES_OPEN,
    CatalogRole,
    ChildStatus,
    Cluster,
    FederatedCredential,
    Identity,
    IdentityRequest,
    IdentityStatus,
    NamespaceOwnership,
    RequestedRole,
    RequestKind,
    RequestStatus,
    ResourceGroupOwnership,
    RoleChange,
    Team,
)
from identities.naming import fic_subject, uami_name
from identities.policy import (
    ClusterFacts,
    IdentityFacts,
    PolicyContext,
    PolicyResult,
    RequestDraft,
    RoleDraft,
    RoleFacts,
    evaluate_request,
)
from identities.policy.scope_context import ScopeContext, scope_contexts
from identities.scopes import Scope, ScopeError, parse_scope
from identities.selectors.requests import ids_or_none
from identities.validators import SCOPE_RESOURCE_GROUP, is_dns1123_label, is_dns1123_subdomain

# --- policy --------------------------------------------------------------------------------


def identity_request_draft(
    identity_request: IdentityRequest, *, requested: list[RequestedRole] | None = None
) -> RequestDraft:
    """The saved request as a draft, to run the policy over it again (a change request's kept
    roles are not part of it: the policy reads what the identity holds now). `requested`: its
    role rows with their roles, when the caller read them already (`requested_roles`)."""
    rows = requested if requested is not None else requested_roles(identity_request)
    return RequestDraft(
        kind=identity_request.kind,
        team=identity_request.team.name,
        cluster=identity_request.cluster.name,
        namespace=identity_request.namespace,
        service_account=identity_request.service_account,
        app_name=identity_request.app_name,
        roles=tuple(
            RoleDraft(
                role=requested.role.name, scope=requested.scope, expires_at=requested.expires_at
            )
            for requested in rows
            if requested.change in (RoleChange.NONE, RoleChange.ADD)
        ),
        remove=tuple(
            RoleDraft(role=requested.role.name, scope=requested.scope)
            for requested in rows
            if requested.change == RoleChange.REMOVE
        ),
        renew=tuple(
            RoleDraft(
                role=requested.role.name, scope=requested.scope, expires_at=requested.expires_at
            )
            for requested in rows
            if requested.change == RoleChange.RENEW
        ),
        tags=dict(identity_request.tags or {}),
        justification=identity_request.justification,
        is_exception=identity_request.is_exception,
        identity_id=identity_request.identity_id,
        identity_expires_at=identity_request.identity_expires_at,
    )


def catalog_facts() -> dict[str, RoleFacts]:
    """The role catalog for the policy, keyed by lower-cased name and by GUID."""
    catalog: dict[str, RoleFacts] = {}
    for role in CatalogRole.objects.all():
        facts = RoleFacts(
            name=role.name,
            guid=role.role_definition_guid,
            resource_types=tuple(role.resource_types or ()),
            privileged=role.privileged,
            can_assign_roles=role.can_assign_roles,
        )
        catalog[role.name.lower()] = facts
        catalog[role.role_definition_guid.lower()] = facts
    return catalog


def policy_context_for(
    draft: RequestDraft,
    *,
    exclude_request_id: int | None = None,
    catalog: dict[str, RoleFacts] | None = None,
    loaded: tuple[Team, Cluster] | None = None,
) -> PolicyContext:
    """Everything the policy checks need to know about the world for `draft`.

    `exclude_request_id` is the request being re-checked, so it does not count against itself;
    `catalog` saves reloading the catalog when checking many drafts; `loaded` is the saved
    request's team and cluster, already read (the draft names them).
    """
    team: Team | None
    cluster: Cluster | None
    if loaded is not None and (loaded[0].name, loaded[1].name) == (draft.team, draft.cluster):
        team, cluster = loaded
    else:
        team = Team.objects.filter(name=draft.team).first() if draft.team else None
        cluster = Cluster.objects.filter(name=draft.cluster).first() if draft.cluster else None
    cluster_facts = None
    owned: frozenset[str] = frozenset()
    if cluster is not None:
        cluster_facts = ClusterFacts(
            name=cluster.name,
            subscription_id=cluster.subscription_id,
            resource_group=cluster.resource_group,
            oidc_issuer_url=cluster.oidc_issuer_url,
            workload_identity_enabled=cluster.workload_identity_enabled,
            allowed_scope_subscriptions=frozenset(
                s.lower() for s in cluster.allowed_scope_subscriptions
            ),
        )
        if team is not None:
            owned = frozenset(
                NamespaceOwnership.objects.filter(cluster=cluster, team=team).values_list(
                    "namespace", flat=True
                )
            )
    if catalog is None:
        catalog = catalog_facts()

    federations: dict[tuple[str, str], tuple[int, str]] = {}
    taken: frozenset[str] = frozenset()
    other_open = 0
    workload_ok = is_dns1123_label(draft.namespace) and is_dns1123_subdomain(draft.service_account)
    if workload_ok:
        live_fics = (
            FederatedCredential.objects.filter(
                subject=fic_subject(draft.namespace, draft.service_account)
            )
            .exclude(status=ChildStatus.REMOVED)
            .select_related("identity")
        )
        if cluster is not None:
            # Only the cluster's issuer matters, and (issuer, subject) hits the unique index.
            live_fics = live_fics.filter(issuer=cluster.oidc_issuer_url)
        for fic in live_fics:
            federations[(fic.issuer, fic.subject)] = (fic.identity_id, fic.identity.name)
        if cluster is not None:
            other_open = (
                IdentityRequest.objects.filter(
                    cluster=cluster,
                    namespace=draft.namespace,
                    service_account=draft.service_account,
                    status=RequestStatus.PENDING,
                )
                .exclude(pk__in=ids_or_none(exclude_request_id))
                .count()
            )
            if draft.kind == RequestKind.NEW and is_dns1123_label(draft.app_name):
                name = uami_name(
                    cluster=cluster.name,
                    namespace=draft.namespace,
                    app_name=draft.app_name,
                    service_account=draft.service_account,
                )
                # Lower(...) = lower(value), as in the partial unique index, so it is used.
                taken = frozenset(
                    n.lower()
                    for n in Identity.objects.annotate(
                        subscription_lower=Lower("subscription_id"),
                        resource_group_lower=Lower("resource_group"),
                        name_lower=Lower("name"),
                    )
                    .filter(
                        subscription_lower=cluster.subscription_id.lower(),
                        resource_group_lower=cluster.resource_group.lower(),
                        name_lower=name.lower(),
                    )
                    .exclude(status=IdentityStatus.DECOMMISSIONED)
                    .values_list("name", flat=True)
                )

    return PolicyContext(
        team_exists=team is not None,
        cluster=cluster_facts,
        owned_namespaces=owned,
        catalog=catalog,
        federations=federations,
        identity=_identity_facts(draft.identity_id, exclude_request_id=exclude_request_id),
        taken_identity_names=taken,
        other_open_requests_for_subject=other_open,
        scope_owners=scope_owners(draft.roles),
        protected_resource_groups=protected_resource_groups(),
        now=timezone.now(),
        access_max_days=settings.ACCESS_MAX_DAYS,
        access_max_days_privileged=settings.ACCESS_MAX_DAYS_PRIVILEGED,
        **_azure_facts(draft.roles, cluster_facts),
    )


def _azure_facts(roles: Iterable[RoleDraft], cluster: ClusterFacts | None) -> dict[str, Any]:
    """Which of the draft's scopes exist in Azure and whose tags name an owning team (one
    Resource Graph query through identities.scope_lookup, cached), as PolicyContext fields."""
    allowed = cluster.allowed_scope_subscriptions if cluster is not None else None
    facts: dict[str, Any] = {"ownership_tag": settings.OWNERSHIP_TAG}
    try:
        found = scope_lookup.lookup(existence_ids(roles, allowed))
    except scope_lookup.ScopeLookupUnavailable as error:
        return {**facts, "scope_lookup_error": str(error) or "Azure did not answer"}
    if found is None:
        return facts
    tag = settings.OWNERSHIP_TAG.lower()
    named = {
        key: value
        for key, row in found.items()
        for tag_name, value in row.tags.items()
        if tag_name.lower() == tag  # Azure tag names are case-insensitive
    }
    teams = set(Team.objects.filter(name__in=set(named.values())).values_list("name", flat=True))
    return {
        **facts,
        "existing_scopes": frozenset(found),
        "tag_owners": {key: team for key, team in named.items() if team in teams},
    }


def existence_ids(
    roles: Iterable[RoleDraft], allowed_subscriptions: Iterable[str] | None
) -> list[str]:
    """The ids to ask Azure about for these roles' scopes (sorted, distinct): a resource's
    top-level id; none in a subscription the cluster may not grant roles in (None: any)."""
    allowed = None if allowed_subscriptions is None else {s.lower() for s in allowed_subscriptions}
    ids: set[str] = set()
    for requested in roles:
        try:
            scope: Scope = parse_scope(requested.scope)
        except ScopeError:
            continue  # the policy refuses it on its own
        if allowed is None or scope.subscription_id in allowed:
            ids.add(scope.existence_id)  # Azure is never asked about a refused subscription
    return sorted(ids)


def pending_existence_ids(identity_requests: Iterable[IdentityRequest]) -> list[str]:
    """Every id the policy checks of these saved requests will ask Azure about, so a page of
    them can be looked up at once (scope_lookup.looked_up_together)."""
    ids: set[str] = set()
    for identity_request in identity_requests:
        draft = identity_request_draft(identity_request)
        ids.update(existence_ids(draft.roles, identity_request.cluster.allowed_scope_subscriptions))
    return sorted(ids)


def scope_owners(roles: Iterable[RoleDraft]) -> dict[str, str]:
    """Resource group id (lower-cased) -> owning team, for the groups the scopes are in. One
    query, whatever the number of roles."""
    groups: set[tuple[str, str]] = set()
    for requested in roles:
        try:
            scope = parse_scope(requested.scope)
        except ScopeError:
            continue  # the policy refuses it on its own
        if scope.resource_group is not None:
            groups.add((scope.subscription_id, scope.resource_group.lower()))
    if not groups:
        return {}
    match = Q()
    for subscription_id, group in groups:
        match |= Q(subscription_lower=subscription_id, group_lower=group)
    owned = (
        ResourceGroupOwnership.objects.annotate(
            subscription_lower=Lower("subscription_id"), group_lower=Lower("resource_group")
        )
        .filter(match)
        .values_list("subscription_id", "resource_group", "team__name")
    )
    return {
        f"/subscriptions/{sub.lower()}/resourcegroups/{group.lower()}": team
        for sub, group, team in owned
    }


def protected_resource_groups() -> frozenset[str]:
    """Resource group ids (lower-cased) holding the portal's own identities: every cluster's
    identity resource group, and PROTECTED_RESOURCE_GROUPS from the settings."""
    clusters = Cluster.objects.values_list("subscription_id", "resource_group")
    groups = {f"/subscriptions/{sub}/resourcegroups/{group}".lower() for sub, group in clusters}
    for configured in settings.PROTECTED_RESOURCE_GROUPS:
        # Parsed like any scope, so a typo cannot quietly protect nothing.
        try:
            scope = parse_scope(configured)
        except ScopeError as error:
            raise ImproperlyConfigured(
                f"PROTECTED_RESOURCE_GROUPS: {configured!r} {error.explanation}."
            ) from None
        if scope.level != SCOPE_RESOURCE_GROUP or scope.resource_group_id is None:
            raise ImproperlyConfigured(
                f"PROTECTED_RESOURCE_GROUPS: {configured!r} is not a resource group id."
            )
        groups.add(scope.resource_group_id.lower())
    return frozenset(groups)


def _identity_facts(identity_id: int | None, *, exclude_request_id: int | None) -> Any:
    if identity_id is None:
        return None
    identity = Identity.objects.select_related("team").filter(pk=identity_id).first()
    if identity is None:
        return None
    open_change = (
        IdentityRequest.objects.filter(
            identity=identity,
            kind=RequestKind.CHANGE_ROLES,
            status__in=REQUEST_STATUSES_OPEN,
        )
        .exclude(pk__in=ids_or_none(exclude_request_id))
        .values_list("pk", "status")
        .first()
    )
    return IdentityFacts(
        id=identity.pk,
        name=identity.name,
        team=identity.team.name,
        status=identity.status,
        live_fic_count=identity.federated_credentials.exclude(status=ChildStatus.REMOVED).count(),
        decommission_open=IdentityRequest.objects.filter(
            identity=identity,
            kind=RequestKind.DECOMMISSION,
            status__in=REQUEST_STATUSES_OPEN,
        )
        .exclude(pk__in=ids_or_none(exclude_request_id))
        .exists(),
        roles=frozenset(
            (guid.lower(), scope.lower())
            for guid, scope in identity.role_assignments.exclude(
                status=ChildStatus.REMOVED
            ).values_list("role__role_definition_guid", "scope")
        ),
        open_change_request_id=open_change[0] if open_change else None,
        open_change_status=open_change[1] if open_change else "",
    )


def requested_roles(identity_request: IdentityRequest) -> list[RequestedRole]:
    """The request's role rows with their catalog roles: one query, whatever their number."""
    return list(identity_request.roles.select_related("role"))


def identity_request_policy(
    identity_request: IdentityRequest,
    *,
    catalog: dict[str, RoleFacts] | None = None,
    requested: list[RequestedRole] | None = None,
) -> PolicyResult:
    """The policy verdict on a saved request, as the world is now (`requested`: see
    `identity_request_draft`)."""
    draft, context = _saved_draft_and_context(identity_request, catalog, requested)
    return evaluate_request(draft, context)


def identity_request_review(
    identity_request: IdentityRequest, *, catalog: dict[str, RoleFacts] | None = None
) -> tuple[PolicyResult, list[ScopeContext]]:
    """The policy verdict on a saved request, and what an approver reads about each role it
    adds (owner, existence, cross-team, protected, risk), from the same facts: the scopes are
    looked up in Azure once, through the policy's cached lookup."""
    draft, context = _saved_draft_and_context(identity_request, catalog)
    result = evaluate_request(draft, context)
    return result, scope_contexts(draft, context, result)


def _saved_draft_and_context(
    identity_request: IdentityRequest,
    catalog: dict[str, RoleFacts] | None,
    requested: list[RequestedRole] | None = None,
) -> tuple[RequestDraft, PolicyContext]:
    draft = identity_request_draft(identity_request, requested=requested)
    context = policy_context_for(
        draft,
        exclude_request_id=identity_request.pk,
        catalog=catalog,
        loaded=(identity_request.team, identity_request.cluster),
    )
    return draft, context
