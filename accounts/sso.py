"""Single sign-on with Microsoft Entra ID over OpenID Connect (mozilla-django-oidc).

Off unless ``OIDC_RP_CLIENT_ID`` is set; local accounts keep working either way. The flow is the
authorization code flow with PKCE, state and nonce (the library's views). What this module adds
on top of the library:

- the ID token is checked in full: signature and expiry (library), plus issuer (this tenant's
  v2.0 issuer), audience (our client id), ``tid`` and the presence of ``oid`` — the library does
  not check ``iss`` or ``aud`` itself;
- claims come from the ID token (Entra's ``groups`` claim is not in the userinfo answer), so
  there is no call to Microsoft Graph;
- users are matched on tenant id + object id (``SsoAccount``), the stable key Microsoft
  documents; ``preferred_username`` becomes the username of a new account, and an existing local
  account with that username and no link yet is linked (admins create such accounts on purpose);
- Entra group object ids map to portal roles and teams (``SSO_GROUP_ROLES``,
  ``SSO_GROUP_TEAMS``); every sign-in makes the mapped roles and teams match the token through
  ``user_directory_sync`` (audited), leaving roles and teams the mapping does not name alone;
- a refused sign-in says why on the login page and in a warning log line (never a token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.models import ServicePrincipal, SsoAccount
from identities import roles
from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.services import user_directory_sync

logger = logging.getLogger(__name__)

# Entra puts these in place of `groups` when a user is in more groups than fit in a token.
_OVERAGE_CLAIMS = ("_claim_names", "hasgroups")


class SignInRefused(Exception):
    """The identity provider vouched for someone the portal will not let in; the message is
    shown to the person signing in."""


def sso_enabled() -> bool:
    return bool(getattr(settings, "OIDC_RP_CLIENT_ID", ""))


def context(request: HttpRequest) -> dict[str, Any]:
    """Template context: whether to offer "Sign in with Microsoft Entra ID"."""
    return {"sso_enabled": sso_enabled()}


def parse_group_map(raw: str, setting: str) -> dict[str, set[str]]:
    """``"<group-object-id>=<value>, ..."`` → {group id (lower case): {values}}.

    A group may appear more than once (one role or team per entry); ``;`` also separates.
    """
    result: dict[str, set[str]] = {}
    for item in raw.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        group, sep, value = item.partition("=")
        if not sep or not group.strip() or not value.strip():
            raise ValueError(f"{setting}: {item!r} is not of the form <group-object-id>=<value>")
        result.setdefault(group.strip().lower(), set()).add(value.strip())
    return result


@dataclass(frozen=True)
class GroupMapping:
    roles: dict[str, set[str]]
    teams: dict[str, set[str]]

    @classmethod
    def from_settings(cls) -> GroupMapping:
        return cls(
            roles=parse_group_map(settings.SSO_GROUP_ROLES, "SSO_GROUP_ROLES"),
            teams=parse_group_map(settings.SSO_GROUP_TEAMS, "SSO_GROUP_TEAMS"),
        )

    @property
    def managed_roles(self) -> set[str]:
        return set().union(*self.roles.values()) if self.roles else set()

    @property
    def managed_teams(self) -> set[str]:
        return set().union(*self.teams.values()) if self.teams else set()

    def for_groups(self, groups: list[str]) -> tuple[set[str], set[str]]:
        """The roles and teams the user's groups give."""
        member_of = {g.lower() for g in groups}
        wanted_roles = {r for g in member_of for r in self.roles.get(g, ())}
        wanted_teams = {t for g in member_of for t in self.teams.get(g, ())}
        return wanted_roles, wanted_teams


def _tenant_base() -> str:
    return f"{settings.ENTRA_AUTHORITY_HOST.rstrip('/')}/{settings.ENTRA_TENANT_ID}"


def expected_issuer() -> str:
    return f"{_tenant_base()}/v2.0"


_DERIVED_ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "/oauth2/v2.0/authorize",
    "OIDC_OP_TOKEN_ENDPOINT": "/oauth2/v2.0/token",
    "OIDC_OP_JWKS_ENDPOINT": "/discovery/v2.0/keys",
    # Required by the library's constructor; never called (claims come from the ID token).
    "OIDC_OP_USER_ENDPOINT": "https://graph.microsoft.com/oidc/userinfo",
}


def oidc_setting(attr: str, *default: Any) -> Any:
    """The library's settings lookup, with Entra endpoints derived from the tenant unless set."""
    if attr in _DERIVED_ENDPOINTS and not getattr(settings, attr, ""):
        path = _DERIVED_ENDPOINTS[attr]
        return path if path.startswith("https://") else _tenant_base() + path
    return import_from_settings(attr, *default)


def id_token_problems(claims: dict[str, Any]) -> list[str]:
    """What is wrong with verified ID-token claims for this portal (empty: acceptable)."""
    problems = []
    issuer = expected_issuer()
    if claims.get("iss") != issuer:
        problems.append(f"issuer is {claims.get('iss')!r}, expected {issuer!r}")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if settings.OIDC_RP_CLIENT_ID not in audiences:
        problems.append(f"audience is {audience!r}, expected {settings.OIDC_RP_CLIENT_ID!r}")
    if str(claims.get("tid", "")).lower() != settings.ENTRA_TENANT_ID.lower():
        problems.append(f"tenant is {claims.get('tid')!r}, expected {settings.ENTRA_TENANT_ID!r}")
    if not claims.get("oid"):
        problems.append("the token has no 'oid' (object id) claim")
    if not (claims.get("preferred_username") or claims.get("email")):
        problems.append("the token has neither 'preferred_username' nor 'email'")
    return problems


class EntraIdBackend(OIDCAuthenticationBackend):
    """Always listed in AUTHENTICATION_BACKENDS; does nothing while SSO is off."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if sso_enabled():
            super().__init__(*args, **kwargs)

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if not sso_enabled() or request is None or "code" not in request.GET:
            return None
        try:
            return super().authenticate(request, **kwargs)
        except SignInRefused as exc:
            reason = str(exc)
        except SuspiciousOperation as exc:
            reason = f"the sign-in answer could not be trusted ({exc})"
        except requests.RequestException as exc:
            status = getattr(exc.response, "status_code", None)
            reason = f"Entra ID did not answer the token request ({status or type(exc).__name__})"
        logger.warning("single sign-on refused: %s", reason)
        messages.error(request, f"Single sign-on failed: {reason}.")
        return None

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        claims: dict[str, Any] = super().verify_token(token, **kwargs)
        problems = id_token_problems(claims)
        if problems:
            raise SuspiciousOperation("ID token refused: " + "; ".join(problems))
        return claims

    def get_userinfo(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        # The verified ID token has everything, including `groups`; no Graph call.
        return payload

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        if "groups" not in claims and any(k in claims for k in _OVERAGE_CLAIMS):
            raise SignInRefused(
                "you are in more Entra groups than fit in a token; ask the portal's "
                "administrators to emit only the groups assigned to the application "
                "(groupMembershipClaims: ApplicationGroup)"
            )
        return True

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        return get_user_model().objects.filter(
            sso_account__tenant_id=str(claims["tid"]).lower(),
            sso_account__object_id=str(claims["oid"]).lower(),
        )

    @transaction.atomic
    def create_user(self, claims: dict[str, Any]) -> Any:
        username = str(claims.get("preferred_username") or claims["email"]).lower()[:150]
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        created = user is None
        if user is None:
            user = user_model(username=username)
            user.set_unusable_password()
            user.save()
        elif ServicePrincipal.objects.filter(user=user).exists():
            # A team's service principal acts only through trusted tokens, never as a person.
            raise SignInRefused(f"the portal account {username!r} is a service principal")
        elif SsoAccount.objects.filter(user=user).exists():
            raise SignInRefused(
                f"the portal account {username!r} is linked to another Entra ID user"
            )
        account = SsoAccount.objects.create(
            user=user, tenant_id=str(claims["tid"]).lower(), object_id=str(claims["oid"]).lower()
        )
        audit_record(
            actor=user,
            action=AuditAction.USER_SSO_LINKED,
            data={
                "user": username,
                "user_id": user.pk,
                "tenant_id": account.tenant_id,
                "object_id": account.object_id,
                "new_account": created,
            },
        )
        return self.update_user(user, claims)

    @transaction.atomic
    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        name = str(claims.get("name") or "")
        first, _, last = name.partition(" ")
        user.first_name, user.last_name = first[:150], last[:150]
        user.email = str(claims.get("email") or "")[:254]
        user.save(update_fields=["first_name", "last_name", "email"])
        groups = [str(g).lower() for g in claims.get("groups", [])]
        SsoAccount.objects.filter(user=user).update(last_sign_in_at=timezone.now(), groups=groups)
        mapping = GroupMapping.from_settings()
        wanted_roles, wanted_teams = mapping.for_groups(groups)
        user_directory_sync(
            user=user,
            roles_wanted=wanted_roles,
            teams_wanted=wanted_teams,
            managed_roles=mapping.managed_roles,
            managed_teams=mapping.managed_teams,
            source={
                "source": "entra-id",
                "issuer": claims["iss"],
                "object_id": claims["oid"],
                "matched_groups": sorted(g for g in groups if g in mapping.roles | mapping.teams),
            },
        )
        return user


class SignInStart(OIDCAuthenticationRequestView):
    """ "Sign in with Microsoft Entra ID": redirect to the authorize endpoint (404 while off)."""

    get_settings = staticmethod(oidc_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not sso_enabled():
            raise Http404("Single sign-on is not configured.")
        response: HttpResponse = super().get(request)
        return response


class SignInCallback(OIDCAuthenticationCallbackView):
    """Where Entra ID sends the browser back (404 while off)."""

    get_settings = staticmethod(oidc_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not sso_enabled():
            raise Http404("Single sign-on is not configured.")
        if error := request.GET.get("error"):
            description = request.GET.get("error_description", "")
            messages.error(request, f"Single sign-on failed: {error} {description}".strip())
        response: HttpResponse = super().get(request)
        return response


@register()
def sso_settings_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Refuse to start with SSO half-configured or mapped to roles that do not exist."""
    if not sso_enabled():
        return []
    errors: list[CheckMessage] = []
    for name in ("OIDC_RP_CLIENT_SECRET", "ENTRA_TENANT_ID"):
        if not getattr(settings, name, ""):
            errors.append(
                Error(f"{name} is required when OIDC_RP_CLIENT_ID is set.", id="portal.E101")
            )
    try:
        mapping = GroupMapping.from_settings()
    except ValueError as exc:
        return [*errors, Error(str(exc), id="portal.E102")]
    for role in sorted(mapping.managed_roles - set(roles.ROLE_GROUPS)):
        errors.append(
            Error(
                f"SSO_GROUP_ROLES names the role {role!r}; roles are "
                f"{', '.join(roles.ROLE_GROUPS)}.",
                id="portal.E103",
            )
        )
    return errors
