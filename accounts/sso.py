"""Single sign-on with Microsoft Entra ID over OpenID Connect (mozilla-django-oidc).

Off unless ``OIDC_RP_CLIENT_ID`` is set; local accounts keep working either way. The flow is the
authorization code flow with PKCE, state and nonce (the library's views). What this module adds
on top of the library:

- the ID token is checked in full: signature (library), expiry with a small leeway for clock
  skew (an expired token is refused with a reason, not a server error), issuer (this tenant's
  v2.0 issuer, in China on Entra's own issuer host), audience (our client id), ``tid`` and the
  presence of ``oid`` and ``preferred_username`` — the library does not check ``iss`` or
  ``aud`` itself;
- claims come from the ID token (Entra's ``groups`` claim is not in the userinfo answer), so
  there is no call to Microsoft Graph;
- users are matched on tenant id + object id (``SsoAccount``), the stable key Microsoft
  documents; ``preferred_username`` (never ``email``) becomes the username of a new account, and
  an existing local account with that username and no link yet is linked to a member of the
  tenant (admins create such accounts on purpose), never to a guest;
- Entra group object ids map to portal roles and teams (``SSO_GROUP_ROLES``,
  ``SSO_GROUP_TEAMS``); every sign-in makes the mapped roles and teams match the token through
  ``user_directory_sync`` (audited), leaving roles and teams the mapping does not name alone;
- a refused sign-in says why on the login page and in a warning log line (never a token).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import jwt
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

# Seconds of clock skew allowed on the ID token's exp, nbf and iat. OpenID Connect Core 1.0 §2
# (exp, checked in §3.1.3.7): "Implementers MAY provide for some small leeway, usually no more
# than a few minutes, to account for clock skew".
ID_TOKEN_LEEWAY_SECONDS = 60

# Where Entra's issuer host differs from its sign-in host. Entra in China (21Vianet) is signed
# in to at login.chinacloudapi.cn (azure-identity's AzureAuthorityHosts.AZURE_CHINA, our
# AZURE_CLOUD=china) but writes iss=https://login.partner.microsoftonline.cn/{tenant}/v2.0:
# Azure/azure-dev#5912 ("issuer from OIDC discovery 'https://login.partner.microsoftonline.cn/
# …/v2.0' does not match authority 'https://login.chinacloudapi.cn/…/'"),
# jenkinsci/azure-ad-plugin#679 (the same iss refused), and the authentication endpoint that
# learn.microsoft.com/entra/identity-platform/authentication-national-cloud lists for
# "Microsoft Entra China operated by 21Vianet".
_ISSUER_HOSTS = {"https://login.chinacloudapi.cn": "https://login.partner.microsoftonline.cn"}

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


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
    """The exact ``iss`` of this tenant's v2.0 ID tokens: Entra writes the tenant GUID in lower
    case, whatever the case of ENTRA_TENANT_ID."""
    authority = settings.ENTRA_AUTHORITY_HOST.rstrip("/")
    host = _ISSUER_HOSTS.get(authority.lower(), authority)
    return f"{host}/{settings.ENTRA_TENANT_ID.lower()}/v2.0"


def is_guest(claims: dict[str, Any]) -> bool:
    """Whether the user was authenticated by another tenant or identity provider (a guest).

    Entra's ``idp`` "Records the identity provider that authenticated the subject of the token.
    This value is identical to the value of the issuer claim unless the user account isn't in the
    same tenant as the issuer - guests, for instance. If the claim isn't present, it means that
    the value of ``iss`` can be used instead" (learn.microsoft.com/entra/identity-platform/
    id-token-claims-reference); v1-style, this tenant is ``https://sts.windows.net/{tid}/``.
    """
    idp = str(claims.get("idp") or "").lower()
    if not idp:
        return False
    tenant = str(claims.get("tid", "")).lower()
    return idp not in {str(claims.get("iss", "")).lower(), f"https://sts.windows.net/{tenant}/"}


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
    if not claims.get("preferred_username"):
        # Never `email` instead: Entra's claims reference says it "isn't guaranteed to be
        # correct ... Never use it for authorization" (naming or linking an account is one).
        problems.append(
            "the token has no 'preferred_username' claim (the portal never names or links an "
            "account by 'email')"
        )
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

    def _verify_jws(self, payload: str, key: Any) -> dict[str, Any]:
        """The library's algorithm and signature check, with ID_TOKEN_LEEWAY_SECONDS of clock
        skew on exp/nbf/iat; a token outside it (or otherwise invalid) is refused with a reason
        instead of escaping the library (it catches only DecodeError) as a server error."""
        try:
            alg = jwt.get_unverified_header(payload).get("alg")
            if alg != self.OIDC_RP_SIGN_ALGO:
                raise SuspiciousOperation(
                    f"the token's algorithm {alg!r} is not {self.OIDC_RP_SIGN_ALGO!r}"
                )
            claims: dict[str, Any] = jwt.decode(
                payload,
                key,
                algorithms=[alg],
                options={"verify_aud": False},  # id_token_problems checks aud and iss
                leeway=ID_TOKEN_LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError as exc:
            raise SignInRefused(
                "the ID token from Entra ID has expired (more than "
                f"{ID_TOKEN_LEEWAY_SECONDS} s ago); sign in again, and if it happens again check "
                "this server's clock"
            ) from exc
        except jwt.ImmatureSignatureError as exc:
            raise SignInRefused(
                "the ID token from Entra ID is not valid yet: this server's clock is more than "
                f"{ID_TOKEN_LEEWAY_SECONDS} s behind Entra's; sync it (NTP) and sign in again"
            ) from exc
        except jwt.InvalidTokenError as exc:
            raise SuspiciousOperation(f"JWS token verification failed ({exc})") from exc
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
        # `preferred_username` only, never `email` (see id_token_problems, which requires it).
        if not claims.get("preferred_username"):
            raise SignInRefused("the token has no 'preferred_username' claim")
        username = str(claims["preferred_username"]).lower()[:150]
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
        elif is_guest(claims):
            # Entra: guests "should treat the user as if they're a brand new user to the
            # service" (id-token-claims-reference), and a guest's preferred_username comes from
            # its home tenant or provider: it never takes over a local account of that name.
            raise SignInRefused(
                f"the portal account {username!r} already exists and you signed in as a guest "
                f"(identity provider {claims['idp']!r}); a guest is never linked to an existing "
                "account by its name: an administrator must link the account"
            )
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
    tenant = getattr(settings, "ENTRA_TENANT_ID", "")
    if tenant and not _GUID.fullmatch(tenant):
        errors.append(
            Error(
                f"ENTRA_TENANT_ID must be the tenant id, a GUID, not {tenant!r}: ID tokens carry "
                "the GUID in 'iss' and 'tid', which the portal compares with it.",
                id="portal.E104",
            )
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
