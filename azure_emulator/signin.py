"""Entra ID sign-in for people: the OpenID Connect authorization code flow.

What the portal's single sign-on needs from Entra ID, served for directory users registered
through the control API (``POST /_emulator/users``):

- ``GET /{tenant}/oauth2/v2.0/authorize`` checks the request (client, ``response_type=code``,
  ``openid`` scope, redirect URI) and shows a page to pick who signs in; a ``login_hint`` that
  names a registered user skips the page. Choosing (``POST`` to the same URL) redirects to the
  redirect URI with ``code`` and ``state``, as Entra does after a successful sign-in.
- ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=authorization_code`` redeems a code
  once, for the client it was issued to and the same redirect URI (AADSTS70000/70008/50148
  otherwise), and answers an ID token signed with the tenant key published at
  ``/discovery/v2.0/keys``: ``iss`` ``{base}/{tenant}/v2.0``, ``aud`` the client id, ``tid``,
  ``oid``, ``sub``, ``preferred_username``, ``name``, ``email``, ``nonce`` and, like an app
  registration with ``groupMembershipClaims``, ``groups`` (object ids). A user registered with
  ``"overage": true`` gets ``_claim_names``/``_claim_sources`` instead, as Entra sends when a
  user is in more groups than fit in a token.

The only client is the portal's own app registration (its client id and secret); PKCE
(``S256``) is checked when the authorize request carried a ``code_challenge``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from azure_emulator import keys
from azure_emulator.context import Context
from azure_emulator.protocol import OAuthError, Request, Response, Route, json_response

CODE_LIFETIME = 600
ID_TOKEN_LIFETIME = 3600


def route(ctx: Context, request: Request, tenant: str, rest: str) -> Route | None:
    """Match the authorize endpoint and the authorization-code grant of the token endpoint."""
    if rest == "oauth2/v2.0/authorize" and request.method in {"GET", "POST"}:
        return Route("entra.authorize", "entra", lambda: _authorize(ctx, request, tenant))
    if rest == "oauth2/v2.0/token" and request.method == "POST":
        form = _form(request)
        if form.get("grant_type") == "authorization_code":
            return Route("entra.token.code", "entra", lambda: _redeem(ctx, request, tenant, form))
    return None


def user_register(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """Add (or replace, by username) a directory user who can sign in; returns the record."""
    username = str(body.get("username") or "").strip().lower()
    if "@" not in username:
        raise ValueError("username must be a user principal name such as dana@contoso.example")
    groups = body.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ValueError("groups must be a list of group object ids")
    with ctx.store.mutation() as data:
        users: dict[str, Any] = data["users"]
        previous = next((u for u in users.values() if u["username"] == username), None)
        oid = str(body.get("oid") or (previous or {}).get("oid") or uuid.uuid4()).lower()
        if previous is not None and previous["oid"] != oid:
            users.pop(previous["oid"], None)
        record = {
            "oid": oid,
            "username": username,
            "name": str(body.get("name") or username.split("@")[0]),
            "email": str(body.get("email") or username),
            "groups": [g.lower() for g in groups],
            "overage": bool(body.get("overage", False)),
        }
        users[oid] = record
        return dict(record)


def _form(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}


def check_tenant(ctx: Context, tenant: str) -> None:
    """AADSTS90002 for a tenant other than the emulator's (every Entra endpoint checks it)."""
    if tenant.lower() != ctx.store.tenant_id:
        raise OAuthError(
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
            "are signing into the correct cloud.",
        )


def _authorize(ctx: Context, request: Request, tenant: str) -> Response:
    check_tenant(ctx, tenant)
    params = {k: v[0] for k, v in request.query.items() if v}
    if request.method == "POST":
        params = {**params, **_form(request)}
    portal = ctx.store.data["portal"]
    if str(params.get("client_id", "")).lower() != portal["client_id"]:
        raise OAuthError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{params.get('client_id', '')}' was not found in the "
            f"directory '{ctx.store.tenant_id}'.",
        )
    redirect_uri = params.get("redirect_uri", "")
    if urlsplit(redirect_uri).scheme not in {"http", "https"}:
        raise OAuthError(
            400,
            "invalid_request",
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match the "
            "redirect URIs configured for the application.",
        )
    if params.get("response_type") != "code":
        raise OAuthError(400, "unsupported_response_type", 700054, "response_type must be 'code'.")
    if "openid" not in params.get("scope", "").split():
        raise OAuthError(400, "invalid_scope", 90014, "The scope must include 'openid'.")
    users: dict[str, Any] = ctx.store.data["users"]
    chosen = None
    if request.method == "POST":
        chosen = users.get(str(params.get("user_oid", "")).lower())
        if chosen is None:
            raise OAuthError(400, "invalid_request", 50034, "That user does not exist.")
    elif hint := params.get("login_hint"):
        chosen = next((u for u in users.values() if u["username"] == hint.lower()), None)
    if chosen is None:
        return _picker(request, params, list(users.values()))
    code = secrets.token_urlsafe(32)
    with ctx.signin_lock:
        ctx.signin_codes[code] = {
            "user": chosen["oid"],
            "client_id": portal["client_id"],
            "redirect_uri": redirect_uri,
            "nonce": params.get("nonce"),
            "code_challenge": params.get("code_challenge"),
            "code_challenge_method": params.get("code_challenge_method", "plain"),
            "expires": time.monotonic() + CODE_LIFETIME,
        }
    answer = {"code": code}
    if "state" in params:
        answer["state"] = params["state"]
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return Response(302, b"", {"Location": f"{redirect_uri}{separator}{urlencode(answer)}"})


def _picker(request: Request, params: dict[str, str], users: list[dict[str, Any]]) -> Response:
    """The 'pick an account' page: one button per registered user, posting the original query."""
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
        if k != "user_oid"
    )
    buttons = (
        "".join(
            f'<button type="submit" name="user_oid" value="{html.escape(u["oid"])}">'
            f"{html.escape(u['name'])} &lt;{html.escape(u['username'])}&gt;</button>"
            for u in sorted(users, key=lambda u: u["username"])
        )
        or "<p>No directory users. Register one with POST /_emulator/users.</p>"
    )
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>Sign in - Azure emulator</title></head><body>"
        "<h1>Pick an account</h1><p>Azure emulator: Entra ID sign-in.</p>"
        f'<form method="post" action="{html.escape(request.path)}">{hidden}{buttons}</form>'
        "</body></html>"
    )
    return Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})


def _redeem(ctx: Context, request: Request, tenant: str, form: dict[str, str]) -> Response:
    check_tenant(ctx, tenant)
    portal = ctx.store.data["portal"]
    client_id = form.get("client_id", "").lower()
    secret = form.get("client_secret", "")
    basic = request.header("Authorization") or ""
    if basic.startswith("Basic "):
        client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
        client_id = client_id.lower()
    if client_id != portal["client_id"] or not hmac.compare_digest(
        secret.encode(), portal["client_secret"].encode()
    ):
        raise OAuthError(
            401, "invalid_client", 7000215, "Invalid client secret provided or unknown client."
        )
    with ctx.signin_lock:
        grant = ctx.signin_codes.pop(form.get("code", ""), None)
    if grant is None or grant["expires"] < time.monotonic():
        raise OAuthError(
            400,
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired or has been used.",
        )
    if grant["redirect_uri"] != form.get("redirect_uri"):
        raise OAuthError(
            400,
            "invalid_grant",
            70000,
            "The redirect URI does not match the one the authorization code was issued for.",
        )
    if grant["code_challenge"] and not _pkce_ok(grant, form.get("code_verifier", "")):
        raise OAuthError(
            400, "invalid_grant", 50148, "The code_verifier does not match the code_challenge."
        )
    user = ctx.store.data["users"].get(grant["user"])
    if user is None:
        raise OAuthError(400, "invalid_grant", 50034, "The user account no longer exists.")
    now = int(time.time())
    issuer = f"{request.base_url}/{ctx.store.tenant_id}/v2.0"
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_LIFETIME,
        "tid": ctx.store.tenant_id,
        "oid": user["oid"],
        # Entra's sub is pairwise: stable per user and app.
        "sub": hashlib.sha256(f"{user['oid']}|{client_id}".encode()).hexdigest()[:43],
        "preferred_username": user["username"],
        "name": user["name"],
        "email": user["email"],
        "ver": "2.0",
    }
    if grant["nonce"]:
        claims["nonce"] = grant["nonce"]
    if user["overage"]:
        claims["_claim_names"] = {"groups": "src1"}
        claims["_claim_sources"] = {
            "src1": {
                "endpoint": f"https://graph.microsoft.com/v1.0/users/{user['oid']}/getMemberObjects"
            }
        }
    else:
        claims["groups"] = list(user["groups"])
    id_token = keys.sign(ctx.store.entra_key, claims)
    access_token = keys.sign(
        ctx.store.entra_key,
        {**claims, "aud": "00000003-0000-0000-c000-000000000000", "scp": "openid profile email"},
    )
    return json_response(
        200,
        {
            "token_type": "Bearer",
            "scope": "openid profile email",
            "expires_in": ID_TOKEN_LIFETIME,
            "access_token": access_token,
            "id_token": id_token,
        },
    )


def _pkce_ok(grant: dict[str, Any], verifier: str) -> bool:
    if grant["code_challenge_method"] == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    else:
        computed = verifier
    return hmac.compare_digest(computed, grant["code_challenge"])
