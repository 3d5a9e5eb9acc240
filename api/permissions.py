"""Who may call what, before any object is looked up. Object-level visibility is the selectors'
job (an invisible object is a 404 there); what a role may do is the services' job (403)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.models import ApiToken
from accounts.oidc import OidcGrant
from identities import roles


def request_token(request: Request) -> ApiToken | None:
    """The API token the request authenticated with, or None for a session."""
    return request.auth if isinstance(request.auth, ApiToken) else None


def request_scopes(request: Request) -> tuple[str, ...] | None:
    """The scopes the request's credential carries: an API token's or a trusted OIDC token's
    (its rules'); None for a session, which is not scoped."""
    if isinstance(request.auth, ApiToken):
        return tuple(request.auth.scopes)
    if isinstance(request.auth, OidcGrant):
        return request.auth.scopes
    return None


class HasTokenScope(BasePermission):
    """A token must carry the scope the operation needs: the view's `read_scope` (`read`, or
    None for none) for GET, its `write_scope` (`request` or `approve`; None: no token may) for
    POST. Sessions are not scoped: the web UI acts with all of its user's roles."""

    message = "This API token does not have the scope this operation needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        scopes = request_scopes(request)
        if scopes is None or not hasattr(view, (request.method or "").lower()):
            return True  # sessions are unscoped; an unsupported method gets its 405
        if request.method in SAFE_METHODS:
            scope = getattr(view, "read_scope", "read")
            if scope is None:
                return True
        else:
            # Fails closed: a write without a declared scope is not open to tokens.
            scope = getattr(view, "write_scope", None)
            if scope is None:
                self.message = f"{request.method} {request.path} is not available to API tokens."
                return False
        if scope in scopes:
            return True
        self.message = (
            f"This API token has the scopes {', '.join(scopes) or 'none'}; "
            f"{request.method} {request.path} needs '{scope}'."
        )
        return False


class SessionOnlyForWrites(BasePermission):
    """Tokens cannot mint or revoke tokens: a leaked token must not be able to outlive itself."""

    message = (
        "API tokens cannot create or revoke tokens or trust rules; sign in to the portal "
        "to do that."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.method in SAFE_METHODS or request_scopes(request) is None


class IsAuditorOrAdmin(BasePermission):
    """The global audit log and its export are for auditors (and admins)."""

    message = "The global audit log is for auditors."

    def has_permission(self, request: Request, view: Any) -> bool:
        return roles.is_auditor(request.user) or roles.is_admin(request.user)
