"""A team's machines: its service principals, the OIDC trust rules that let a CI system's own
token act as one, and its service tokens (portal API tokens owned by the team, not a person).

Who manages them: the team's members who are requesters (what a pipeline of theirs may do is
what they may do), and portal admins. Everyone who sees a team's requests sees its machines.
Each write here records its audit row in the same transaction.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ApiToken, ServicePrincipal, TrustRule
from accounts.oidc import RESERVED_CLAIMS, issuer_address_problem, issuer_url_problem
from accounts.tokens import NAME_MAX, PREFIX_LENGTH, SERVICE_SCOPES, token_generate, token_hash
from identities import roles
from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.errors import (
    InputInvalidError,
    NotFoundError,
    PermissionDeniedError,
)
from identities.models import Team, TeamMembership
from identities.policy import PolicyResult, Violation
from identities.selectors import is_team_member, teams_of
from identities.selectors.people import SERVICE_PRINCIPAL_PREFIX

if TYPE_CHECKING:
    from django.contrib.auth.models import User

PRINCIPAL_PREFIX = SERVICE_PRINCIPAL_PREFIX  # the domain's four-eyes check relies on it
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
FIELD_MAX = 300
CLAIMS_MAX = 10
# In a subject pattern's literal start: an owner (at least one character that is not ':' or
# '/') and the '/' after it. `repo:contoso/`, `project_path:group/` and `sc://org/` pass;
# `repo:`, `r`, `repo:/` and `sc://` (whose slashes name nobody) do not.
_OWNER_PINNED = re.compile(r"[^:/]/")


# --- Who may ------------------------------------------------------------------------------------


def may_manage_machines(user: Any, team: Team) -> bool:
    """The team's requesters and portal admins register rules and mint or revoke tokens."""
    if roles.is_admin(user):
        return True
    return roles.is_requester(user) and is_team_member(user, team) and not is_service(user)


def is_service(user: Any) -> bool:
    """`user` is the row behind a service principal (not a person)."""
    pk = getattr(user, "pk", None)
    return pk is not None and ServicePrincipal.objects.filter(user_id=pk).exists()


def _require_manager(actor: User, team: Team) -> None:
    if not may_manage_machines(actor, team):
        raise PermissionDeniedError(
            f"Only requesters of team {team.name!r} and admins manage its trust rules and "
            "service tokens."
        )


# --- Reads --------------------------------------------------------------------------------------


def _visible_teams(user: Any) -> QuerySet[Team]:
    return Team.objects.all() if roles.sees_everything(user) else teams_of(user)


def trust_rules_visible_to(user: Any) -> QuerySet[TrustRule]:
    """Rules of the user's teams (every team's for approvers, auditors, admins), newest first."""
    return (
        TrustRule.objects.select_related("service_principal__team", "created_by", "disabled_by")
        .filter(service_principal__team__in=_visible_teams(user))
        .order_by("-created_at", "-id")
    )


def trust_rule_get(*, user: Any, pk: int) -> TrustRule:
    """One visible rule, or NotFoundError (another team's rule is not found either)."""
    rule = trust_rules_visible_to(user).filter(pk=pk).first()
    if rule is None:
        raise NotFoundError(f"Trust rule {pk} was not found.")
    return rule


def service_tokens_visible_to(user: Any) -> QuerySet[ApiToken]:
    """Service tokens of the user's teams (every team's for the see-everything roles)."""
    return (
        ApiToken.objects.select_related("user__service_principal__team", "created_by")
        .filter(user__service_principal__team__in=_visible_teams(user))
        .order_by("-created_at", "-id")
    )


def service_token_get(*, user: Any, pk: int) -> ApiToken:
    token = service_tokens_visible_to(user).filter(pk=pk).first()
    if token is None:
        raise NotFoundError(f"Service token {pk} was not found.")
    return token


def manageable_teams(user: Any) -> QuerySet[Team]:
    """The teams whose machines `user` may manage (what the page's forms offer)."""
    if roles.is_admin(user):
        return Team.objects.order_by("name")
    if not roles.is_requester(user):
        return Team.objects.none()
    return teams_of(user).order_by("name")


# --- Service principals -------------------------------------------------------------------------


def _principal_name_problems(name: str) -> list[Violation]:
    if not _DNS_LABEL.match(name):
        return [
            Violation(
                "service_principal",
                "invalid",
                "A service principal name is a DNS label: lowercase letters, digits and '-', "
                "at most 63 characters, e.g. deploy-pipeline.",
            )
        ]
    return []


def _principal_ensure(*, team: Team, name: str, actor: User) -> ServicePrincipal:
    """The team's principal `name`, created (with its backing user) on first use."""
    # Two first uses at once: the team's row lock makes the second find the first's principal.
    Team.objects.select_for_update().filter(pk=team.pk).first()
    principal = ServicePrincipal.objects.filter(team=team, name=name).first()
    if principal is not None:
        return principal
    label = f"{PRINCIPAL_PREFIX}{team.name}/{name}"
    user_model = get_user_model()
    if user_model.objects.filter(username=label).exists():
        raise InputInvalidError(
            PolicyResult(
                violations=[
                    Violation("service_principal", "taken", f"A user named {label} exists.")
                ]
            )
        )
    user = user_model(username=label, first_name="Service principal")
    user.set_unusable_password()  # signs in with trusted tokens only, never a password
    user.save()
    user.groups.add(Group.objects.get(name=roles.REQUESTERS))
    TeamMembership.objects.create(team=team, user=user)
    principal = ServicePrincipal.objects.create(team=team, name=name, user=user, created_by=actor)
    audit_record(
        actor=actor,
        action=AuditAction.SERVICE_PRINCIPAL_CREATED,
        data={"service_principal": label, "team": team.name, "user_id": user.pk},
    )
    return principal


def _scope_problems(scopes: list[str]) -> list[Violation]:
    if not scopes:
        return [Violation("scopes", "required", "Choose at least one scope.")]
    unknown = sorted(set(scopes) - set(SERVICE_SCOPES))
    if unknown:
        return [
            Violation(
                "scopes",
                "unknown_scope",
                f"Scope(s) {', '.join(unknown)} cannot be granted to a service principal; "
                f"it may hold {', '.join(SERVICE_SCOPES)} (approving stays with people).",
            )
        ]
    return []


def _name_problems(name: str) -> list[Violation]:
    if not name:
        return [Violation("name", "required", "Name it (what uses it).")]
    if len(name) > NAME_MAX:
        return [Violation("name", "too_long", f"At most {NAME_MAX} characters.")]
    return []


# --- Trust rules --------------------------------------------------------------------------------


def _text_problems(field: str, value: str, *, required: bool) -> list[Violation]:
    if not value:
        return [Violation(field, "required", "Required.")] if required else []
    if len(value) > FIELD_MAX:
        return [Violation(field, "too_long", f"At most {FIELD_MAX} characters.")]
    if value != value.strip() or any(ch.isspace() for ch in value):
        return [Violation(field, "whitespace", "Must not contain whitespace.")]
    return []


def _rule_problems(
    *, issuer: str, audience: str, subject: str, subject_pattern: str, claims: Any
) -> list[Violation]:
    problems = _text_problems("issuer", issuer, required=True)
    if not problems and (why := issuer_url_problem(issuer)) is not None:
        problems.append(Violation("issuer", "invalid_url", f"The issuer URL {why}."))
    elif not problems and (why := issuer_address_problem(issuer)) is not None:
        # Checked again at every fetch (DNS changes); here so the author hears it at once.
        problems.append(Violation("issuer", "forbidden_address", f"The issuer's host {why}."))
    problems += _text_problems("audience", audience, required=True)
    problems += _text_problems("subject", subject, required=False)
    problems += _text_problems("subject_pattern", subject_pattern, required=False)
    if subject and subject_pattern:
        problems.append(
            Violation("subject_pattern", "both", "Give an exact subject or a pattern, not both.")
        )
    elif subject_pattern and "*" not in subject_pattern:
        problems.append(
            Violation(
                "subject_pattern",
                "no_wildcard",
                "A pattern has a literal start and at least one '*', e.g. "
                "repo:contoso/payments:*; use `subject` for an exact match.",
            )
        )
    elif subject_pattern and not _OWNER_PINNED.search(subject_pattern.split("*", 1)[0]):
        # `repo:*` or `r*` on GitHub's issuer matches every repository on GitHub: the literal
        # start must name an owner (the text before a `/`), as every CI system's subject does.
        problems.append(
            Violation(
                "subject_pattern",
                "too_broad",
                "A pattern has a literal start that names an owner before the first '*' (an "
                "organisation, group or project followed by '/'), e.g. repo:contoso/payments:* "
                "(GitHub), project_path:contoso/payments:* (GitLab) or "
                "sc://contoso/payments/* (Azure DevOps); use `subject` for an exact match.",
            )
        )
    if not isinstance(claims, dict) or not all(
        isinstance(name, str) and isinstance(value, str) and name and value
        for name, value in claims.items()
    ):
        problems.append(
            Violation("claims", "invalid", "Claims are names mapped to exact string values.")
        )
    elif len(claims) > CLAIMS_MAX:
        problems.append(Violation("claims", "too_many", f"At most {CLAIMS_MAX} claims."))
    elif reserved := sorted(set(claims) & RESERVED_CLAIMS):
        problems.append(
            Violation(
                "claims",
                "reserved_claim",
                f"{', '.join(reserved)} cannot be pinned as a claim (use subject for sub; the "
                "others are checked for every token).",
            )
        )
    # An issuer such as GitHub's signs tokens for every repository on GitHub: a rule must say
    # which of them it trusts.
    if not (subject or subject_pattern or claims):
        problems.append(
            Violation(
                "subject",
                "unconstrained",
                "Give a subject, a subject pattern or exact claims: the issuer signs tokens for "
                "everyone who uses it.",
            )
        )
    return problems


@transaction.atomic
def trust_rule_create(
    *,
    actor: User,
    team: Team,
    service_principal: str,
    name: str,
    issuer: str,
    audience: str,
    subject: str = "",
    subject_pattern: str = "",
    claims: dict[str, str] | None = None,
    scopes: list[str],
) -> TrustRule:
    """Register a rule for `team` acting as its principal `service_principal` (created on
    first use); InputInvalidError lists every problem. Audited."""
    _require_manager(actor, team)
    claims = {} if claims is None else claims
    scopes = list(dict.fromkeys(scope.strip().lower() for scope in scopes))
    name = name.strip()
    problems = [
        *_name_problems(name),
        *_principal_name_problems(service_principal),
        *_rule_problems(
            issuer=issuer,
            audience=audience,
            subject=subject,
            subject_pattern=subject_pattern,
            claims=claims,
        ),
        *_scope_problems(scopes),
    ]
    if problems:
        raise InputInvalidError(PolicyResult(violations=problems))
    principal = _principal_ensure(team=team, name=service_principal, actor=actor)
    rule = TrustRule.objects.create(
        service_principal=principal,
        name=name,
        issuer=issuer,
        audience=audience,
        subject=subject,
        subject_pattern=subject_pattern,
        claims=claims,
        scopes=[scope for scope in SERVICE_SCOPES if scope in scopes],
        created_by=actor,
    )
    audit_record(actor=actor, action=AuditAction.TRUST_RULE_CREATED, data=describe_rule(rule))
    return rule


@transaction.atomic
def trust_rule_disable(*, rule: TrustRule, actor: User) -> TrustRule:
    """Disable `rule` for good (tokens it accepted stop working at once). Idempotent: a
    disabled rule stays as it was, with no second audit row."""
    _require_manager(actor, rule.service_principal.team)
    now = timezone.now()
    updated = TrustRule.objects.filter(pk=rule.pk, disabled_at__isnull=True).update(
        disabled_at=now, disabled_by=actor
    )
    if updated != 1:
        rule.refresh_from_db()
        return rule
    rule.disabled_at, rule.disabled_by = now, actor
    audit_record(actor=actor, action=AuditAction.TRUST_RULE_DISABLED, data=describe_rule(rule))
    return rule


def describe_rule(rule: TrustRule) -> dict[str, Any]:
    return {
        "trust_rule_id": rule.pk,
        "name": rule.name,
        "team": rule.service_principal.team.name,
        "service_principal": rule.service_principal.label,
        "issuer": rule.issuer,
        "audience": rule.audience,
        "subject": rule.subject,
        "subject_pattern": rule.subject_pattern,
        "claims": dict(rule.claims),
        "scopes": list(rule.scopes),
    }


# --- Service tokens -----------------------------------------------------------------------------


@transaction.atomic
def service_token_create(
    *,
    actor: User,
    team: Team,
    service_principal: str,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
) -> tuple[ApiToken, str]:
    """Mint a token owned by the team's principal `service_principal` (created on first use):
    the same format, hashing and expiry as a personal token. Returns the row and the
    plaintext, shown once. Audited (without the secret)."""
    _require_manager(actor, team)
    scopes = list(dict.fromkeys(scope.strip().lower() for scope in scopes))
    name = name.strip()
    problems = [
        *_name_problems(name),
        *_principal_name_problems(service_principal),
        *_scope_problems(scopes),
    ]
    if expires_at is not None and expires_at <= timezone.now():
        problems.append(Violation("expires_at", "in_the_past", "The expiry must be in the future."))
    if problems:
        raise InputInvalidError(PolicyResult(violations=problems))
    principal = _principal_ensure(team=team, name=service_principal, actor=actor)
    raw = token_generate()
    token = ApiToken.objects.create(
        user=principal.user,
        created_by=actor,
        name=name,
        prefix=raw[:PREFIX_LENGTH],
        hashed_secret=token_hash(raw),
        scopes=[scope for scope in SERVICE_SCOPES if scope in scopes],
        expires_at=expires_at,
    )
    audit_record(actor=actor, action=AuditAction.SERVICE_TOKEN_CREATED, data=describe_token(token))
    return token, raw


@transaction.atomic
def service_token_revoke(*, token: ApiToken, actor: User) -> ApiToken:
    """Revoke a team's service token for good. Idempotent, like a personal token's."""
    principal = ServicePrincipal.objects.select_related("team").get(user_id=token.user_id)
    _require_manager(actor, principal.team)
    now = timezone.now()
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=now, revoked_by=actor
    )
    if updated != 1:
        token.refresh_from_db()
        return token
    token.revoked_at, token.revoked_by = now, actor
    audit_record(actor=actor, action=AuditAction.SERVICE_TOKEN_REVOKED, data=describe_token(token))
    return token


def describe_token(token: ApiToken) -> dict[str, Any]:
    """What the audit trail records about a service token: never the secret or its hash."""
    return {
        "token_id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "service_principal": token.user.get_username(),
        "scopes": list(token.scopes),
        "expires_at": token.expires_at,
    }
