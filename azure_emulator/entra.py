"""Entra ID: OIDC discovery, the v2.0 token endpoint, and ARM bearer-token checks.

Two grants are served on ``POST /{tenant}/oauth2/v2.0/token`` (client_credentials):

- ``client_secret`` for the portal's own service principal (MSAL-based ClientSecretCredential);
- ``client_assertion`` for workload identity federation: the client id is a UAMI's clientId and
  the assertion a sandbox cluster's ServiceAccount token. Checks run in the order real Entra ID
  evidently uses (a token from an issuer Entra cannot reach still gets a "no matching record"
  answer): the FIC match on issuer, subject and audience first (AADSTS700211 / 700213 /
  7002138 today, 70021 with the ``fic_mismatch_errors="legacy"`` knob), then the issuer's keys
  (AADSTS90061), the signature (AADSTS700027) and the validity window (AADSTS700024).
"""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

import jwt

from azure_emulator import keys, signin
from azure_emulator.context import Context
from azure_emulator.protocol import (
    ArmError,
    OAuthError,
    Request,
    Response,
    Route,
    json_response,
    utc_now,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = 3599
# The ARM token audiences each cloud's ARM accepts: its resource manager host and the older
# management.core form, which is the US Government cloud's credential scope (azure-mgmt-core
# tools.get_arm_endpoints: public management.azure.com, usgov credential scope
# management.core.usgovcloudapi.net, china management.chinacloudapi.cn). Knob ``cloud``.
CLOUD_ARM_HOSTS = {
    "public": ("management.azure.com", "management.core.windows.net"),
    "usgov": ("management.usgovcloudapi.net", "management.core.usgovcloudapi.net"),
    "china": ("management.chinacloudapi.cn", "management.core.chinacloudapi.cn"),
}


def arm_audiences(cloud: str) -> tuple[str, ...]:
    return tuple(f"https://{host}{slash}" for host in CLOUD_ARM_HOSTS[cloud] for slash in ("/", ""))


_WIF_DOC = (
    "https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation"
)
_WIF_DOC_NEW = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"


def route(ctx: Context, request: Request) -> Route | None:
    """Match the Entra ID endpoints (paths that start with a tenant segment)."""
    parts = request.path.strip("/").split("/")
    if len(parts) < 2:
        return None
    tenant, rest = parts[0], "/".join(parts[1:])
    if (found := signin.route(ctx, request, tenant, rest)) is not None:
        return found
    if request.method == "GET" and rest in {
        "v2.0/.well-known/openid-configuration",
        ".well-known/openid-configuration",
    }:
        return Route("entra.discovery", "entra", lambda: _discovery(ctx, request, tenant))
    if request.method == "GET" and rest in {"discovery/v2.0/keys", "discovery/keys"}:
        return Route("entra.keys", "entra", lambda: _keys(ctx))
    if request.method == "POST" and rest == "oauth2/v2.0/token":
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        op = "entra.token.assertion" if "client_assertion" in form else "entra.token.secret"
        request.scope = form.get("scope", "")
        return Route(op, "entra", lambda: _token(ctx, tenant, form), faulty=True)
    return None


def _discovery(ctx: Context, request: Request, tenant: str) -> Response:
    signin.check_tenant(ctx, tenant)
    base = f"{request.base_url}/{ctx.store.tenant_id}"
    return json_response(
        200,
        {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
        },
    )


def _keys(ctx: Context) -> Response:
    return json_response(200, {"keys": [keys.public_jwk(ctx.store.entra_key)]})


def _token(ctx: Context, tenant: str, form: dict[str, str]) -> Response:
    signin.check_tenant(ctx, tenant)
    grant_type = form.get("grant_type")
    if grant_type != "client_credentials":
        raise OAuthError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )
    for name in ("client_id", "scope"):
        if not form.get(name):
            raise OAuthError(
                400,
                "invalid_request",
                900144,
                f"The request body must contain the following parameter: '{name}'.",
            )
    scope = form["scope"].split()[0]
    if not scope.endswith("/.default"):
        raise OAuthError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )
    audience = scope.removesuffix(".default")
    if "client_assertion" in form:
        subject = _federated_subject(ctx, form)
    elif "client_secret" in form:
        subject = _portal_subject(ctx, form)
    else:
        raise OAuthError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{ctx.store.tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME,
        "tid": ctx.store.tenant_id,
        "idtyp": "app",
        "ver": "1.0",
        "uti": uuid.uuid4().hex,
        **subject,
    }
    token = keys.sign(ctx.store.entra_key, claims)
    return json_response(
        200,
        {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": token,
        },
    )


def _unknown_client(ctx: Context, client_id: str) -> OAuthError:
    return OAuthError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory "
        f"'{ctx.store.tenant_id}'. This can happen if the application has not been installed by "
        "the administrator of the tenant or consented to by any user in the tenant. You may have "
        "sent your authentication request to the wrong tenant.",
    )


def _portal_subject(ctx: Context, form: dict[str, str]) -> dict[str, Any]:
    portal = ctx.store.data["portal"]
    if form["client_id"].lower() != portal["client_id"]:
        raise _unknown_client(ctx, form["client_id"])
    if not hmac.compare_digest(form["client_secret"].encode(), portal["client_secret"].encode()):
        raise OAuthError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the "
            f"client secret value, not the client secret ID, for a secret added to app "
            f"'{portal['client_id']}'.",
        )
    return {"oid": portal["object_id"], "sub": portal["object_id"], "appid": portal["client_id"]}


def _federated_subject(ctx: Context, form: dict[str, str]) -> dict[str, Any]:
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError(
            400,
            "invalid_request",
            50027,
            "JWT token is invalid or malformed: unsupported client_assertion_type.",
        )
    with ctx.store.lock:
        identity = next(
            (
                record
                for record in ctx.store.data["identities"].values()
                if record["client_id"] == form["client_id"].lower()
            ),
            None,
        )
        if identity is None:
            raise _unknown_client(ctx, form["client_id"])
        fics = list(ctx.store.data["fics"].get(identity["id"].lower(), {}).values())
        clusters = list(ctx.store.data["clusters"].values())
    assertion = form["client_assertion"]
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise OAuthError(
            400, "invalid_request", 50027, "JWT token is invalid or malformed."
        ) from None
    issuer, subject = str(claims.get("iss", "")), str(claims.get("sub", ""))
    raw_aud = claims.get("aud", [])
    audiences = [raw_aud] if isinstance(raw_aud, str) else [str(a) for a in raw_aud]
    now = time.time()
    propagation = float(ctx.knobs["fic_propagation_seconds"])
    # A credential younger than the propagation delay is not visible to Entra yet: the exchange
    # is judged as if it did not exist (or, with fic_propagation_error_code, answered with one
    # fixed form, the way a stale record answered 700213 until recreated: issue 1200).
    visible = [fic for fic in fics if now - fic["updated_at"] >= propagation]
    matched = [
        fic
        for fic in visible
        if fic["issuer"] == issuer
        and fic["subject"] == subject
        and any(aud in fic["audiences"] for aud in audiences)
    ]
    if not matched:
        forced = ctx.knobs["fic_propagation_error_code"]
        if forced is not None and len(visible) < len(fics):
            raise _no_matching_record(ctx, int(forced), issuer, subject, audiences)
        raise _no_matching_record(
            ctx, _not_found_code(visible, issuer, subject), issuer, subject, audiences
        )
    cluster = next(
        (c for c in clusters if c["oidc_issuer_enabled"] and c["issuer_url"] == issuer), None
    )
    if cluster is None:
        raise OAuthError(400, "invalid_request", 90061, "Request to External OIDC endpoint failed.")
    try:
        keys.verify(cluster["key"], assertion, options={"verify_aud": False, "verify_exp": False})
    except jwt.PyJWTError:
        raise OAuthError(
            401, "invalid_client", 700027, "Client assertion failed signature validation."
        ) from None
    not_before, expiry = float(claims.get("nbf", 0)), float(claims.get("exp", 0))
    if not not_before - 300 <= now <= expiry:
        raise OAuthError(
            400,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: "
            f"{_iso(now)}, assertion valid from {_iso(not_before)}, expiry time of assertion "
            f"{_iso(expiry)}. Review the documentation at "
            "https://docs.microsoft.com/azure/active-directory/develop/"
            "active-directory-certificate-credentials .",
        )
    return {
        "oid": identity["principal_id"],
        "sub": identity["principal_id"],
        "appid": identity["client_id"],
        "xms_mirid": identity["id"],
    }


def _not_found_code(visible: list[dict[str, Any]], issuer: str, subject: str) -> int:
    """Which "no matching federated identity record" form Entra answers today.

    By the first field no visible credential matches: the issuer (700211), then the subject,
    case-insensitively equal (7002138) or not (700213). Issuer and subject matching but the
    audience not gets the generic form (70021): no public body for an audience-specific code
    was found.
    """
    same_issuer = [fic for fic in visible if fic["issuer"] == issuer]
    if not same_issuer:
        return 700211
    if not any(fic["subject"] == subject for fic in same_issuer):
        if any(fic["subject"].lower() == subject.lower() for fic in same_issuer):
            return 7002138
        return 700213
    return 70021


def _no_matching_record(
    ctx: Context, code: int, issuer: str, subject: str, audiences: list[str]
) -> OAuthError:
    """Entra's refusal when no federated credential matches the assertion.

    Bodies as real Entra sends them (``fic_mismatch_errors="legacy"`` gives the older 70021
    form for every case):
    - 70021, ``invalid_request``, HTTP 400: Azure/azure-workload-identity#616 (AZURE-FACTS §4.4);
    - 700211, ``invalid_client``: Azure/azure-workload-identity#1200 ("No matching federated
      identity record found for presented assertion issuer '<iss>'. Please check your
      federated identity credential Subject, Audience and Issuer against the presented
      assertion. <doc>");
    - 700213, ``invalid_client``: Azure/login#482, #379, #453; the newer wording ("Check your
      ...", learn.microsoft.com link) in Azure/azure-workload-identity#1200 (2025-04) and
      dotnet/maui#31978;
    - 7002138, ``invalid_client``: Azure/login#515, #497, #573 ("The subject matches with
      case-insensitive comparison, but not with case-sensitive comparison. ...").
    HTTP 401 for ``invalid_client`` follows microsoft/Agents#202 (7002137, "statusCode": 401);
    the threads quoting 700211/700213 do not show the status.
    """
    if ctx.knobs["fic_mismatch_errors"] == "legacy" or code == 70021:
        return OAuthError(
            400,
            "invalid_request",
            70021,
            "No matching federated identity record found for presented assertion. "
            f"Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. "
            f"Assertion Audience: '{','.join(audiences)}'. {_WIF_DOC}",
        )
    check = "Check your federated identity credential Subject, Audience and Issuer against the "
    if code == 700211:
        text = (
            f"No matching federated identity record found for presented assertion issuer "
            f"'{issuer}'. Please c{check[1:]}presented assertion. {_WIF_DOC}"
        )
    elif code == 7002138:
        text = (
            f"No matching federated identity record found for presented assertion subject "
            f"'{subject}'. The subject matches with case-insensitive comparison, but not with "
            f"case-sensitive comparison. {check}presented assertion. See documentation at: "
            f"{_WIF_DOC_NEW}. See breaking change notification and remediation at: "
            "https://learn.microsoft.com/en-us/entra/identity-platform/"
            "reference-breaking-changes#august-2024."
        )
    else:
        text = (
            f"No matching federated identity record found for presented assertion subject "
            f"'{subject}'. {check}presented assertion. {_WIF_DOC_NEW}"
        )
    return OAuthError(401, "invalid_client", code, text)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(epoch))


def authenticate(ctx: Context, request: Request) -> dict[str, Any]:
    """The caller's verified token claims, or a 401 ARM error like the real one."""
    header = request.header("Authorization")

    def refuse(code: str, message: str) -> ArmError:
        challenge = (
            f'Bearer authorization_uri="{request.base_url}/{ctx.store.tenant_id}", '
            f'error="invalid_token", error_description="{message}"'
        )
        return ArmError(401, code, message, headers={"WWW-Authenticate": challenge})

    if not header:
        raise refuse(
            "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise refuse(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        )
    audiences = arm_audiences(str(ctx.knobs["cloud"]))
    try:
        claims = keys.verify(ctx.store.entra_key, token.strip(), audience=list(audiences))
    except jwt.ExpiredSignatureError:
        now = utc_now().strftime("%m/%d/%Y %H:%M:%S")
        raise refuse(
            "ExpiredAuthenticationToken",
            f"The access token expiry UTC time is earlier than current UTC time '{now}'.",
        ) from None
    except jwt.InvalidAudienceError:
        raise refuse(
            "InvalidAuthenticationTokenAudience",
            "The access token has been obtained for wrong audience or resource. It should "
            f"exactly match with one of the allowed audiences {', '.join(audiences)}.",
        ) from None
    except jwt.PyJWTError:
        raise refuse("InvalidAuthenticationToken", "The access token is invalid.") from None
    if claims.get("tid") != ctx.store.tenant_id:
        raise refuse(
            "InvalidAuthenticationTokenTenant", "The access token is from the wrong issuer."
        )
    return claims
