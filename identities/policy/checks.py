"""The rules, one method each. Every finding names the field and the rule it breaks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from identities import naming
from identities.policy.types import (
    KIND_CHANGE_ROLES,
    KIND_DECOMMISSION,
    KIND_NEW,
    KINDS,
    PolicyContext,
    PolicyResult,
    RequestDraft,
    RoleFacts,
    Violation,
)
from identities.scopes import Scope, ScopeError, parse_scope
from identities.tags import RESERVED_TAG_KEYS, TEAM_TAGS_MAX
from identities.validators import (
    DNS1123_LABEL_MAX,
    DNS1123_SUBDOMAIN_MAX,
    FIC_LIMIT_PER_IDENTITY,
    SCOPE_RESOURCE,
    SCOPE_SUBSCRIPTION,
    TAG_VALUE_MAX,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_fic_name,
    is_reserved_namespace,
    is_uami_name,
    tag_key_problem,
)

EXCEPTION_JUSTIFICATION_MIN = 20
USER_ASSIGNED_IDENTITY_TYPE = "microsoft.managedidentity/userassignedidentities"


class Checks:
    """One evaluation; each method adds to `result`."""

    def __init__(self, draft: RequestDraft, context: PolicyContext) -> None:
        self.draft = draft
        self.context = context
        self.result = PolicyResult()
        self.needs_exception = False

    def refuse(self, field_name: str, rule: str, message: str) -> None:
        self.result.violations.append(Violation(field_name, rule, message))

    def warn(self, field_name: str, rule: str, message: str) -> None:
        self.result.warnings.append(Violation(field_name, rule, message))

    def run(self) -> None:
        draft = self.draft
        if draft.kind not in KINDS:
            self.refuse(
                "kind", "unknown_kind", f"Request kind {draft.kind!r} is not one of {KINDS}."
            )
            return
        self.check_team()
        self.check_justification()
        if draft.kind == KIND_DECOMMISSION:
            self.check_target_identity(for_decommission=True)
            return
        if draft.kind == KIND_CHANGE_ROLES:
            if self.check_target_identity(for_decommission=False, for_change=True):
                self.check_change()
            self.check_exception()
            return
        self.check_cluster()
        namespace_ok = self.check_namespace()
        service_account_ok = self.check_service_account()
        if draft.kind == KIND_NEW:
            app_ok = self.check_app_name()
            self.check_roles()
            self.check_tags()
            self.check_identity_expiry()
        else:
            app_ok = True
            self.check_target_identity(for_decommission=False)
            if draft.roles:
                self.refuse(
                    "roles",
                    "roles_not_allowed",
                    "A ServiceAccount added to an identity shares that identity's role "
                    "assignments; request role changes separately.",
                )
            if draft.tags:
                self.warn(
                    "tags",
                    "tags_ignored",
                    "Tags are ignored: adding a ServiceAccount does not change the identity.",
                )
        if namespace_ok and service_account_ok:
            self.check_federation(app_ok=app_ok)
        self.check_exception()

    # --- who and why ---------------------------------------------------------------------

    def check_team(self) -> None:
        if not self.draft.team:
            self.refuse("team", "required", "Team is required.")
        elif not self.context.team_exists:
            self.refuse("team", "unknown_team", f"Team {self.draft.team!r} does not exist.")

    def check_justification(self) -> None:
        text = self.draft.justification.strip()
        if not text:
            self.refuse("justification", "required", "Justification is required.")
        elif self.draft.is_exception and len(text) < EXCEPTION_JUSTIFICATION_MIN:
            self.refuse(
                "justification",
                "exception_justification",
                f"Justification for an exception must explain why, in at least "
                f"{EXCEPTION_JUSTIFICATION_MIN} characters.",
            )

    def check_cluster(self) -> None:
        cluster = self.context.cluster
        if not self.draft.cluster:
            self.refuse("cluster", "required", "Cluster is required.")
        elif cluster is None:
            self.refuse("cluster", "unknown_cluster", f"Cluster {self.draft.cluster!r} is unknown.")
        elif not cluster.workload_identity_enabled or not cluster.oidc_issuer_url:
            self.refuse(
                "cluster",
                "workload_identity_disabled",
                f"Cluster {cluster.name!r} does not have workload identity and an OIDC issuer "
                "enabled.",
            )
        elif not cluster.oidc_issuer_url.endswith("/"):
            self.warn(
                "cluster",
                "issuer_without_trailing_slash",
                f"Cluster {cluster.name!r} has OIDC issuer {cluster.oidc_issuer_url!r} without "
                "the trailing '/' AKS issuers have; a mismatch fails every token exchange "
                "(AADSTS70021).",
            )

    # --- Kubernetes names ---------------------------------------------------------------

    def check_namespace(self) -> bool:
        namespace = self.draft.namespace
        if not namespace:
            self.refuse("namespace", "required", "Namespace is required.")
            return False
        if not is_dns1123_label(namespace):
            self.refuse(
                "namespace",
                "dns1123_label",
                f"Namespace {namespace!r} is not a DNS-1123 label: at most {DNS1123_LABEL_MAX} "
                "lowercase letters, digits and '-', starting and ending with a letter or digit.",
            )
            return False
        if is_reserved_namespace(namespace):
            self.refuse(
                "namespace",
                "reserved_namespace",
                f"Namespace {namespace!r} is reserved for the platform.",
            )
            return False
        if self.context.cluster is not None and self.context.team_exists:
            if namespace not in self.context.owned_namespaces:
                self.refuse(
                    "namespace",
                    "namespace_not_owned",
                    f"Namespace {namespace!r} on cluster {self.context.cluster.name!r} is not "
                    f"owned by team {self.draft.team!r}.",
                )
            elif namespace == "default":
                self.warn(
                    "namespace",
                    "default_namespace",
                    "Namespace 'default' is shared by everything that names no namespace.",
                )
        return True

    def check_service_account(self) -> bool:
        service_account = self.draft.service_account
        if not service_account:
            self.refuse("service_account", "required", "ServiceAccount name is required.")
            return False
        if not is_dns1123_subdomain(service_account):
            self.refuse(
                "service_account",
                "dns1123_subdomain",
                f"ServiceAccount name {service_account!r} is not a DNS-1123 subdomain: at most "
                f"{DNS1123_SUBDOMAIN_MAX} characters of lowercase letters, digits, '-' and '.', "
                "each dot-separated part starting and ending with a letter or digit.",
            )
            return False
        if service_account == "default":
            self.warn(
                "service_account",
                "default_service_account",
                "ServiceAccount 'default' is used by every pod in the namespace that names no "
                "ServiceAccount; all of them would get this identity.",
            )
        return True

    def check_app_name(self) -> bool:
        app_name = self.draft.app_name
        if not app_name:
            self.refuse("app_name", "required", "App name is required.")
            return False
        if not is_dns1123_label(app_name):
            self.refuse(
                "app_name",
                "dns1123_label",
                f"App name {app_name!r} must be a DNS-1123 label: at most {DNS1123_LABEL_MAX} "
                "lowercase letters, digits and '-', starting and ending with a letter or digit.",
            )
            return False
        return True

    # --- Azure names and federation ------------------------------------------------------

    def check_federation(self, *, app_ok: bool) -> None:
        draft, context = self.draft, self.context
        cluster = context.cluster
        if cluster is None:
            return
        subject = naming.fic_subject(draft.namespace, draft.service_account)
        fic = naming.fic_name(
            cluster=cluster.name, namespace=draft.namespace, service_account=draft.service_account
        )
        if not is_fic_name(fic):  # naming guarantees it; kept so the rule is stated here too
            self.refuse(
                "service_account", "fic_name", f"Derived credential name {fic!r} is invalid."
            )
        if draft.kind == KIND_NEW and app_ok:
            uami = naming.uami_name(
                cluster=cluster.name,
                namespace=draft.namespace,
                app_name=draft.app_name,
                service_account=draft.service_account,
            )
            if not is_uami_name(uami):
                self.refuse("app_name", "uami_name", f"Derived identity name {uami!r} is invalid.")
            elif uami.lower() in context.taken_identity_names:
                self.refuse(
                    "app_name",
                    "identity_name_taken",
                    f"An identity named {uami!r} already exists in resource group "
                    f"{cluster.resource_group!r}; choose another app name.",
                )
        owner = context.federations.get((cluster.oidc_issuer_url, subject))
        if owner is not None:
            identity_id, identity_name = owner
            whose = (
                "this identity"
                if identity_id == draft.identity_id
                else f"identity {identity_name!r} (#{identity_id})"
            )
            self.refuse(
                "service_account",
                "already_federated",
                f"ServiceAccount {draft.namespace}/{draft.service_account} on cluster "
                f"{cluster.name!r} is already federated to {whose}.",
            )
        if context.other_open_requests_for_subject:
            self.warn(
                "service_account",
                "pending_duplicate",
                f"{context.other_open_requests_for_subject} other open request(s) ask for this "
                "ServiceAccount; only the first one approved can be provisioned.",
            )

    def check_target_identity(self, *, for_decommission: bool, for_change: bool = False) -> bool:
        """False when there is no identity of the team to judge the rest against."""
        draft, identity = self.draft, self.context.identity
        if draft.identity_id is None:
            self.refuse("identity", "required", "Choose the identity.")
            return False
        if identity is None:
            self.refuse(
                "identity", "unknown_identity", f"Identity #{draft.identity_id} is unknown."
            )
            return False
        if draft.team and identity.team != draft.team:
            # Say nothing about another team's identity (name, team, state): no existence leak.
            self.refuse(
                "identity",
                "identity_other_team",
                f"Identity #{draft.identity_id} is not an identity of team {draft.team!r}.",
            )
            return False
        if identity.decommission_open:
            self.refuse(
                "identity",
                "decommission_in_progress",
                f"Identity {identity.name!r} already has an open decommission request.",
            )
        if for_decommission:
            # A change being decided or written would race the removal; a failed one does not
            # hold it up (the decommission removes its roles too; it can also be cancelled).
            if identity.open_change_status in ("pending", "sent_back", "approved", "provisioning"):
                self.refuse(
                    "identity",
                    "change_in_progress",
                    f"Identity {identity.name!r} has an open change request "
                    f"#{identity.open_change_request_id} ({identity.open_change_status}); "
                    "cancel it or wait until it is done before decommissioning.",
                )
            if identity.status not in ("ready", "failed"):
                self.refuse(
                    "identity",
                    "identity_not_decommissionable",
                    f"Identity {identity.name!r} is {identity.status}; only ready or failed "
                    "identities can be decommissioned.",
                )
            return True
        if for_change:
            if identity.status != "ready":
                self.refuse(
                    "identity",
                    "identity_not_ready",
                    f"Identity {identity.name!r} is {identity.status}; only a ready identity's "
                    "roles can be changed.",
                )
            if identity.open_change_request_id is not None:
                self.refuse(
                    "identity",
                    "change_in_progress",
                    f"Identity {identity.name!r} already has an open change request "
                    f"#{identity.open_change_request_id}; cancel it or wait until it is done.",
                )
            return True
        if identity.status != "ready":
            self.refuse(
                "identity",
                "identity_not_ready",
                f"Identity {identity.name!r} is {identity.status}; ServiceAccounts can only be "
                "added to a ready identity.",
            )
        if identity.live_fic_count >= FIC_LIMIT_PER_IDENTITY:
            self.refuse(
                "service_account",
                "fic_limit",
                f"Identity {identity.name!r} already has {identity.live_fic_count} federated "
                f"credentials; Azure allows at most {FIC_LIMIT_PER_IDENTITY} per identity.",
            )
        return True

    # --- roles and scopes ----------------------------------------------------------------

    def check_roles(self, *, warn_empty: bool = True) -> dict[tuple[str, str], tuple[int, str]]:
        """Judge the roles asked for; returns (GUID, scope key) -> (index, scope id) for each
        one that names a catalog role on a scope that parses."""
        draft, context = self.draft, self.context
        if not draft.roles and warn_empty:
            self.warn("roles", "no_roles", "No roles requested: the identity can only sign in.")
        seen: set[tuple[str, str]] = set()
        judged: dict[tuple[str, str], tuple[int, str]] = {}
        for index, requested in enumerate(draft.roles):
            prefix = f"roles[{index}]"
            role = context.catalog.get(requested.role.strip().lower())
            if role is None:
                self.refuse(
                    f"{prefix}.role",
                    "unknown_role",
                    f"Role {requested.role!r} is not in the role catalog.",
                )
            parsed = self.check_scope(prefix, requested.scope, role)
            if role is None or parsed is None:
                continue
            key = (role.guid.lower(), parsed.key())
            if key in seen:
                self.refuse(
                    prefix,
                    "duplicate_role_scope",
                    f"Role {role.name!r} on {parsed.id!r} is requested more than once.",
                )
            seen.add(key)
            judged.setdefault(key, (index, parsed.id))
            self.check_role_expiry(prefix, role, requested.expires_at)
            if role.privileged:
                self.needs_exception = True
                message = f"Role {role.name!r} is privileged"
                if draft.is_exception:
                    self.warn(f"{prefix}.role", "privileged_role", message + " (exception).")
                else:
                    self.refuse(
                        f"{prefix}.role",
                        "privileged_role",
                        message + "; it is refused unless the request is marked as an "
                        "exception, which needs two approvers.",
                    )
            if role.can_assign_roles:
                self.warn(
                    f"{prefix}.role",
                    "assigns_roles",
                    f"Role {role.name!r} grants Microsoft.Authorization/roleAssignments/write: "
                    "the identity could grant access to others.",
                )
        return judged

    def check_role_expiry(self, prefix: str, role: RoleFacts, expires_at: datetime | None) -> None:
        """Time-bound access: an end date is in the future; while the role's maximum is set
        (privileged roles: ACCESS_MAX_DAYS_PRIVILEGED, others: ACCESS_MAX_DAYS; 0 = unlimited)
        the role must have one, at most that many days away."""
        context = self.context
        maximum = context.access_max_days_privileged if role.privileged else context.access_max_days
        kind = "privileged role" if role.privileged else "role"
        field_name = f"{prefix}.expires_at"
        if expires_at is None:
            if maximum > 0:
                self.refuse(
                    field_name,
                    "expiry_required",
                    f"Role {role.name!r} needs an end date: a {kind} is granted for at most "
                    f"{maximum} days.",
                )
            return
        self._check_end(field_name, expires_at, maximum, f"a {kind} is granted")

    def check_identity_expiry(self) -> None:
        """A new identity's own end (it is decommissioned then): in the future and, while
        ACCESS_MAX_DAYS is set, at most that many days away."""
        expires_at = self.draft.identity_expires_at
        if expires_at is not None:
            self._check_end(
                "identity_expires_at",
                expires_at,
                self.context.access_max_days,
                "an identity is granted",
            )

    def _check_end(self, field_name: str, expires_at: datetime, maximum: int, what: str) -> None:
        now = self.context.now
        if now is None:
            return  # no clock given: nothing to judge against
        if expires_at <= now:
            self.refuse(
                field_name,
                "expiry_in_past",
                f"End date {expires_at.isoformat()} is not in the future.",
            )
        elif maximum > 0 and expires_at > now + timedelta(days=maximum):
            self.refuse(
                field_name,
                "expiry_beyond_maximum",
                f"End date {expires_at.isoformat()} is more than {maximum} days away: "
                f"{what} for at most {maximum} days.",
            )

    def check_change(self) -> None:
        """A change request: what it removes must be there, what it adds must not be, and the
        identity is judged as it will be after the change. An addition is judged as in a new
        request (catalog, scope, protected, owner team, privileged); the roles it keeps count
        too: an identity that keeps a privileged role or a broad scope and gains another role
        is an exception (four eyes). A pure removal only reduces access: one approver, no
        owner team."""
        draft, identity = self.draft, self.context.identity
        assert identity is not None  # noqa: S101 - check_target_identity returned True
        if not draft.roles and not draft.remove and not draft.renew:
            self.refuse(
                "roles", "no_change", "A change must add, remove or renew at least one role."
            )
            return
        removed = self._removals(identity.roles, identity.name)
        self._renewals(identity.roles, identity.name, removed)
        added = self.check_roles(warn_empty=False)
        for key, (index, scope_id) in added.items():
            role = self.context.catalog[key[0]]
            if key in removed:
                self.refuse(
                    f"roles[{index}]",
                    "added_and_removed",
                    f"Role {role.name!r} on {scope_id!r} is both added and removed.",
                )
            elif key in identity.roles:
                self.refuse(
                    f"roles[{index}]",
                    "role_already_assigned",
                    f"Identity {identity.name!r} already has role {role.name!r} on {scope_id!r}.",
                )
        kept = identity.roles - set(removed)
        after = kept | set(added)
        if not after:
            # Allowed: the client id stays deployed and can sign in but reach nothing, which is
            # what a team pausing an app's access wants; a retired app is decommissioned.
            self.warn(
                "remove",
                "no_roles_left",
                f"After this change identity {identity.name!r} has no role: it can still sign "
                "in but reach nothing. Decommission it instead if the app is retired.",
            )
        if draft.roles:
            self._judge_kept(kept, identity.name)

    def _renewals(
        self, held: frozenset[tuple[str, str]], name: str, removed: Mapping[tuple[str, str], str]
    ) -> None:
        """A renewal keeps a role the identity holds, with a new end date judged as a new
        one is (in the future, within the role's maximum)."""
        for index, requested in enumerate(self.draft.renew):
            prefix = f"renew[{index}]"
            role = self.context.catalog.get(requested.role.strip().lower())
            try:
                scope_key = parse_scope(requested.scope).key()
            except ScopeError:
                scope_key = ""
            key = (role.guid.lower(), scope_key) if role is not None else None
            if role is None or key not in held or key in removed:
                self.refuse(
                    prefix,
                    "role_not_assigned",
                    f"Identity {name!r} holds no role {requested.role!r} on "
                    f"{requested.scope!r} to renew.",
                )
                continue
            self.check_role_expiry(prefix, role, requested.expires_at)

    def _removals(
        self, held: frozenset[tuple[str, str]], identity_name: str
    ) -> dict[tuple[str, str], str]:
        """The removals that name a role the identity holds: key -> scope id."""
        removed: dict[tuple[str, str], str] = {}
        for index, requested in enumerate(self.draft.remove):
            prefix = f"remove[{index}]"
            role = self.context.catalog.get(requested.role.strip().lower())
            if role is None:
                self.refuse(
                    f"{prefix}.role",
                    "unknown_role",
                    f"Role {requested.role!r} is not in the role catalog.",
                )
            try:
                parsed = parse_scope(requested.scope)
            except ScopeError as error:
                shown = requested.scope[:200]
                self.refuse(f"{prefix}.scope", error.rule, f"Scope {shown!r} {error.explanation}.")
                continue
            if role is None:
                continue
            key = (role.guid.lower(), parsed.key())
            if key not in held:
                self.refuse(
                    prefix,
                    "role_not_assigned",
                    f"Identity {identity_name!r} has no role {role.name!r} on {parsed.id!r}: "
                    "there is nothing to remove.",
                )
            elif key in removed:
                self.refuse(
                    prefix,
                    "duplicate_role_scope",
                    f"Role {role.name!r} on {parsed.id!r} is removed more than once.",
                )
            else:
                removed[key] = parsed.id
        return removed

    def _judge_kept(self, kept: frozenset[tuple[str, str]], name: str) -> None:
        for guid, scope_key in sorted(kept):
            role = self.context.catalog.get(guid)
            try:
                broad = parse_scope(scope_key).level != SCOPE_RESOURCE
            except ScopeError:
                broad = False  # held already; a scope the parser no longer accepts is drift's
            if role is None or not (role.privileged or broad):
                continue
            self.needs_exception = True
            message = (
                f"Identity {name!r} keeps {role.name!r} on {scope_key!r}, which is "
                f"{'privileged' if role.privileged else 'a broad scope'}; adding a role to it"
            )
            if self.draft.is_exception:
                self.warn("is_exception", "privileged_after_change", message + " (exception).")
            else:
                self.refuse(
                    "is_exception",
                    "privileged_after_change",
                    message + " is an exception, which needs two approvers: mark it as one.",
                )

    def check_scope(self, prefix: str, scope: str, role: RoleFacts | None) -> Scope | None:
        """The parsed scope, or None after refusing it (each refusal names the rule)."""
        field_name = f"{prefix}.scope"
        try:
            parsed = parse_scope(scope)
        except ScopeError as error:
            if error.rule == "required":
                self.refuse(field_name, "required", "Scope is required.")
                return None
            # Quote at most the start: the message must stay readable for a 2,000-character scope.
            shown = scope if len(scope) <= 200 else scope[:200] + "…"
            self.refuse(field_name, error.rule, f"Scope {shown!r} {error.explanation}.")
            return None
        cluster = self.context.cluster
        if cluster is not None and parsed.subscription_id not in (
            cluster.allowed_scope_subscriptions
        ):
            self.refuse(
                field_name,
                "scope_outside_allowed_subscriptions",
                f"Scope {parsed.id!r} is in subscription {parsed.subscription_id}, which "
                f"identities of cluster {cluster.name!r} may not be granted roles in.",
            )
            return None
        if not self.check_protected(field_name, parsed, role):
            return None
        if not self.check_exists(field_name, parsed):
            return None
        self.check_owner(field_name, parsed)
        if parsed.level != SCOPE_RESOURCE:
            self.needs_exception = True
            level = "a subscription" if parsed.level == SCOPE_SUBSCRIPTION else "a resource group"
            message = f"Scope {parsed.id!r} is {level}, not a single resource"
            if self.draft.is_exception:
                self.warn(field_name, "broad_scope", message + " (exception).")
            else:
                self.refuse(
                    field_name,
                    "broad_scope",
                    message + "; broad scopes are refused unless the request is marked as an "
                    "exception, which needs two approvers.",
                )
        elif role is not None and role.resource_types and parsed.resource_type is not None:
            resource_type = parsed.resource_type.lower()
            if not any(
                resource_type == t.lower() or resource_type.startswith(t.lower() + "/")
                for t in role.resource_types
            ):
                self.warn(
                    field_name,
                    "resource_type_mismatch",
                    f"Role {role.name!r} is meant for {', '.join(role.resource_types)}, "
                    f"not {parsed.resource_type}.",
                )
        return parsed

    def check_protected(self, field_name: str, parsed: Scope, role: RoleFacts | None) -> bool:
        """Scopes that would let an identity take over identities are refused outright, even as
        an exception: any user-assigned identity, the resource groups holding the portal's own
        identities, and a privileged role on a subscription that holds them."""
        resource_type = (parsed.resource_type or "").lower()
        protected = self.context.protected_resource_groups
        reason = ""
        if resource_type.startswith(USER_ASSIGNED_IDENTITY_TYPE):
            reason = "is a user-assigned managed identity"
        elif parsed.resource_group_id is not None and parsed.resource_group_id.lower() in protected:
            reason = "is in a resource group that holds the portal's managed identities"
        elif (
            parsed.resource_group is None
            and role is not None
            and (role.privileged or role.can_assign_roles)
            and any(group.startswith(parsed.key() + "/") for group in protected)
        ):
            reason = f"holds the portal's managed identities, and {role.name!r} is privileged"
        if not reason:
            return True
        self.refuse(
            field_name,
            "protected_scope",
            f"Scope {parsed.id!r} {reason}: a role there could add a federated credential to "
            "another team's identity or grant access to it. Such scopes are never granted "
            "through the portal, not even as an exception.",
        )
        return False

    def check_exists(self, field_name: str, parsed: Scope) -> bool:
        """A scope Azure does not know is refused (nothing could be granted there); one that
        could not be checked is accepted with a finding the approver sees (approval checks
        again)."""
        context = self.context
        if context.scope_lookup_error:
            self.warn(
                field_name,
                "scope_unverified",
                f"Scope {parsed.id!r} could not be checked in Azure "
                f"({context.scope_lookup_error[:200]}): it may not exist. Approval checks again.",
            )
            return True
        if context.existing_scopes is None or parsed.existence_id.lower() in (
            context.existing_scopes
        ):
            return True
        what = parsed.existence_id
        self.refuse(
            field_name,
            "scope_not_found",
            f"Scope {parsed.id!r} does not exist in Azure"
            + (f" ({what!r} was not found)" if what != parsed.id else "")
            + "; pick a resource from the list or check the id.",
        )
        return False

    def check_owner(self, field_name: str, parsed: Scope) -> None:
        """Inside the requesting team's resource groups (or on a resource tagged for it): its own
        business. Another team's (by group or tag): that team must approve too. Nobody's: only
        as an exception (four eyes)."""
        if parsed.resource_group_id is None:
            return  # subscription scopes are broad, and judged as such
        if not self.draft.team:
            return  # no team to compare with: `team` is refused as required already
        owner = self.context.scope_owners.get(parsed.resource_group_id.lower())
        tag_owner = self.context.tag_owners.get(parsed.existence_id.lower())
        if tag_owner is not None and tag_owner not in (owner, self.draft.team):
            tag = self.context.ownership_tag
            self.warn(
                field_name,
                "cross_team_scope",
                f"Scope {parsed.id!r} is tagged {tag}={tag_owner}: a member of {tag_owner!r} "
                "must approve too.",
            )
            if tag_owner not in self.result.owner_teams:
                self.result.owner_teams.append(tag_owner)
        if owner is None and tag_owner is not None:
            return  # owned through its tag (judged just above)
        if owner is None:
            self.needs_exception = True
            message = (
                f"Resource group {parsed.resource_group!r} of scope {parsed.id!r} is owned by no "
                "team"
            )
            if self.draft.is_exception:
                self.warn(field_name, "scope_unowned", message + " (exception).")
            else:
                self.refuse(
                    field_name,
                    "scope_unowned",
                    message + "; ask an admin to record its owner, or mark the request as an "
                    "exception, which needs two approvers.",
                )
        elif owner != self.draft.team:
            self.warn(
                field_name,
                "cross_team_scope",
                f"Scope {parsed.id!r} is in resource group {parsed.resource_group!r} of team "
                f"{owner!r}: a member of {owner!r} must approve too.",
            )
            if owner not in self.result.owner_teams:
                self.result.owner_teams.append(owner)

    # --- tags and exceptions -------------------------------------------------------------

    def check_tags(self) -> None:
        tags = self.draft.tags
        if not isinstance(tags, Mapping):
            self.refuse("tags", "tags_not_a_mapping", "Tags must be a mapping of names to values.")
            return
        if len(tags) > TEAM_TAGS_MAX:
            self.refuse(
                "tags",
                "too_many_tags",
                f"At most {TEAM_TAGS_MAX} tags: Azure allows 50 per resource and the portal sets "
                f"{50 - TEAM_TAGS_MAX} itself.",
            )
        seen: set[str] = set()
        for key, value in tags.items():
            field_name = f"tags.{key}"
            if not isinstance(key, str):
                self.refuse("tags", "tag_key_invalid", f"Tag name {key!r} must be a string.")
                continue
            problem = tag_key_problem(key)
            if problem is not None:
                self.refuse(field_name, "tag_key_invalid", f"Tag name {key!r} {problem}.")
            elif key.lower() in RESERVED_TAG_KEYS:
                self.refuse(
                    field_name,
                    "tag_key_reserved",
                    f"Tag name {key!r} is set by the portal and cannot be supplied.",
                )
            elif key.lower() in seen:
                self.refuse(
                    field_name,
                    "tag_key_duplicate",
                    f"Tag name {key!r} differs only in case from another; Azure tag names are "
                    "case-insensitive.",
                )
            seen.add(key.lower())
            if not isinstance(value, str):
                self.refuse(field_name, "tag_value_invalid", f"Tag {key!r} must have a text value.")
            elif len(value) > TAG_VALUE_MAX:
                self.refuse(
                    field_name,
                    "tag_value_too_long",
                    f"Tag {key!r} has a value longer than {TAG_VALUE_MAX} characters.",
                )

    def check_exception(self) -> None:
        if not self.draft.is_exception:
            return
        if self.needs_exception:
            self.warn(
                "is_exception",
                "two_approvers",
                "Marked as a policy exception: two different approvers must approve it.",
            )
        else:
            self.warn(
                "is_exception",
                "exception_unneeded",
                "Marked as an exception but nothing in it needs one; it still needs two approvers.",
            )
