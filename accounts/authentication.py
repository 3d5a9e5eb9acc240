"""Bearer-token authentication for the REST API (pipelines); the web UI keeps its session.

`Authorization: Bearer wip_…` authenticates as the token's user with `request.auth` set to the
ApiToken, whose scopes the API's permission classes check. A bad token is a 401, never a silent
fall-back to anonymous: a pipeline should learn at once that its token expired.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.login_throttle import client_address
from accounts.models import ApiToken
from accounts.oidc import OidcGrant, OidcTokenRefusedError, looks_like_jwt, oidc_authenticate
from accounts.tokens import TokenInvalidError, api_token_authenticate

KEYWORD = "Bearer"


def _bearer(request: Request) -> str | None:
    """The credentials of an `Authorization: Bearer …` header; None for any other scheme."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    keyword, _, credentials = header.partition(" ")
    if keyword.lower() != KEYWORD.lower():
        return None
    return credentials.strip()


class OidcTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <JWT>` from a CI system a team trusts (accounts.oidc): the
    request acts as the matching rule's service principal, `request.auth` the OidcGrant.
    A portal token (`wip_…`) or anything not shaped like a JWT is left to ApiTokenAuthentication.
    """

    def authenticate(self, request: Request) -> tuple[Any, OidcGrant] | None:
        credentials = _bearer(request)
        if not credentials or not looks_like_jwt(credentials):
            return None
        try:
            # The address bounds how many of its refusals reach the audit trail: DRF
            # authenticates before it throttles, so a refused token meets no throttle.
            grant = oidc_authenticate(credentials, client_address=client_address(request))
        except OidcTokenRefusedError as exc:
            raise exceptions.AuthenticationFailed(exc.reason) from exc
        return grant.principal.user, grant

    def authenticate_header(self, request: Request) -> str:
        return f'{KEYWORD} realm="api"'


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>`; anything else is left to the next authenticator."""

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        credentials = _bearer(request)
        if credentials is None:
            return None
        if not credentials or " " in credentials:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Bearer <token>'."
            )
        try:
            token = api_token_authenticate(credentials)
        except TokenInvalidError as exc:
            raise exceptions.AuthenticationFailed(exc.reason) from exc
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with this challenge) rather than 403 to the unauthenticated.
        return f'{KEYWORD} realm="api"'


class OidcTokenScheme(OpenApiAuthenticationExtension):
    """Documents the OIDC scheme in the OpenAPI schema (registered by being defined)."""

    target_class = "accounts.authentication.OidcTokenAuthentication"
    name = "oidcAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A CI system's own OIDC token (GitHub Actions, Azure DevOps, GitLab) "
            "that one of the team's trust rules accepts (/api/v1/trust-rules/); one token per "
            "call. The request acts as the rule's service principal with the rule's scopes.",
        }


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents the token scheme in the OpenAPI schema (registered by being defined)."""

    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "wip_ followed by 42 base62 characters",
            "description": "An API token (`python manage.py create_api_token USERNAME`, the web "
            "UI or POST /api/v1/tokens/). Scopes: read, request, approve.",
        }
