"""A sandbox cluster's OIDC issuer and the slice of its Kubernetes API the portal uses.

- ``/oidc/<uuid>/.well-known/openid-configuration`` and ``/oidc/<uuid>/openid/v1/jwks``: the
  public issuer documents (no auth), served only when the cluster's OIDC issuer is enabled.
- ``/k8s/<uuid>/...``: bearer-token protected; ServiceAccount get/list/apply/delete and
  TokenRequest (AZURE-FACTS §6.1: no Content-Type is required on the TokenRequest POST). Tokens
  carry ``iss`` = the issuer URL exactly (trailing slash included) and
  ``sub`` = ``system:serviceaccount:<ns>:<sa>``. Errors are Kubernetes ``Status`` objects.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import time
import uuid
from typing import Any

from azure_emulator import keys
from azure_emulator.aks import KUBERNETES_VERSION, api_url
from azure_emulator.context import Context
from azure_emulator.protocol import KubeError, Request, Response, Route, json_response
from azure_emulator.sa_apply import apply, merge_patch, render, validate_new_name

_OIDC = re.compile(r"^/oidc/(?P<uuid>[0-9a-fA-F-]{36})/(?P<rest>.*)$")
_K8S = re.compile(r"^/k8s/(?P<uuid>[0-9a-fA-F-]{36})(?P<rest>/.*)?$")
_SA_LIST = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/serviceaccounts/?$")
_SA_ONE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/serviceaccounts/(?P<name>[^/]+)/?$")
_SA_TOKEN = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[^/]+)/serviceaccounts/(?P<name>[^/]+)/token/?$"
)
MIN_EXPIRATION, MAX_EXPIRATION = 600, 2**32
DEFAULT_EXPIRATION = 3600


def route(ctx: Context, request: Request) -> Route | None:
    """Match the OIDC issuer documents and the per-cluster Kubernetes API."""
    if m := _OIDC.match(request.path):
        rest = m["rest"].rstrip("/")
        op = {".well-known/openid-configuration": "oidc.discovery", "openid/v1/jwks": "oidc.jwks"}
        kind = op.get(rest, "oidc.unknown")
        issuer_uuid = m["uuid"].lower()
        return Route(kind, "oidc", lambda: _oidc(ctx, request, issuer_uuid, kind))
    if m := _K8S.match(request.path):
        rest = m["rest"] or "/"
        kind, cluster_uuid = _kube_op(request.method, rest), m["uuid"].lower()
        # Faulty (fault_* knobs: a test's way to make an API server fail or hang), without the
        # ARM latency (app.py skips it for the kube family).
        return Route(
            kind, "kube", lambda: _kube(ctx, request, cluster_uuid, rest, kind), faulty=True
        )
    return None


def _kube_op(method: str, rest: str) -> str:
    if _SA_TOKEN.match(rest):
        return "k8s.token"
    if _SA_ONE.match(rest):
        names = {"GET": "get", "PATCH": "apply", "DELETE": "delete"}
        return f"k8s.sa.{names.get(method, 'unsupported')}"
    if _SA_LIST.match(rest):
        return "k8s.sa.list"
    return {
        "/.well-known/openid-configuration": "k8s.discovery",
        "/openid/v1/jwks": "k8s.jwks",
        "/version": "k8s.version",
    }.get(rest.rstrip("/") or "/", "k8s.unknown")


def _version() -> dict[str, str]:
    # kubernetes 37's pydantic VersionInfo requires every one of these strings.
    major, minor, _ = KUBERNETES_VERSION.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{KUBERNETES_VERSION}",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-11-01T00:00:00Z",
        "goVersion": "go1.22.8",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _cluster(ctx: Context, cluster_uuid: str) -> dict[str, Any] | None:
    with ctx.store.lock:
        cluster = ctx.store.data["clusters"].get(cluster_uuid)
        return dict(cluster) if cluster else None


def _discovery_document(issuer: str, jwks_uri: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def _oidc(ctx: Context, request: Request, cluster_uuid: str, kind: str) -> Response:
    cluster = _cluster(ctx, cluster_uuid)
    if cluster is None or not cluster["oidc_issuer_enabled"] or kind == "oidc.unknown":
        # The real issuer is a storage blob; a missing one is a bare 404.
        return json_response(404, {"error": "NotFound"}, error_code="NotFound")
    issuer = cluster["issuer_url"]
    if kind == "oidc.discovery":
        return json_response(200, _discovery_document(issuer, f"{issuer}openid/v1/jwks"))
    return json_response(200, {"keys": [keys.public_jwk(cluster["key"])]})


def _not_found(what: str, name: str) -> KubeError:
    return KubeError(404, "NotFound", f'{what} "{name}" not found', {"name": name, "kind": what})


def _kube(ctx: Context, request: Request, cluster_uuid: str, rest: str, kind: str) -> Response:
    cluster = _cluster(ctx, cluster_uuid)
    header = request.header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    presented = token.strip().encode()
    if (
        cluster is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(presented, cluster["token"].encode())
    ):
        raise KubeError(401, "Unauthorized", "Unauthorized")
    if kind == "k8s.version" and request.method == "GET":
        return json_response(200, _version())
    if kind == "k8s.discovery" and request.method == "GET":
        issuer = cluster["issuer_url"]
        jwks = f"{issuer}openid/v1/jwks" if cluster["oidc_issuer_enabled"] else None
        return json_response(
            200,
            _discovery_document(
                issuer, jwks or f"{api_url(request.base_url, cluster)}/openid/v1/jwks"
            ),
        )
    if kind == "k8s.jwks" and request.method == "GET":
        return json_response(200, {"keys": [keys.public_jwk(cluster["key"])]})
    if m := _SA_TOKEN.match(rest):
        if request.method == "POST":
            return _token_request(ctx, request, cluster, m["ns"], m["name"])
    elif m := _SA_ONE.match(rest):
        if request.method == "GET":
            return _sa_get(ctx, cluster_uuid, m["ns"], m["name"])
        if request.method == "PATCH":
            return _sa_patch(ctx, request, cluster_uuid, m["ns"], m["name"])
        if request.method == "DELETE":
            return _sa_delete(ctx, cluster_uuid, m["ns"], m["name"])
    elif (m := _SA_LIST.match(rest)) and request.method == "GET":
        return _sa_list(ctx, cluster_uuid, m["ns"])
    if kind == "k8s.unknown":
        raise KubeError(404, "NotFound", "the server could not find the requested resource")
    raise KubeError(
        405, "MethodNotAllowed", f"the server does not allow this method: {request.method}"
    )


def _accounts(ctx: Context, cluster_uuid: str) -> dict[str, dict[str, Any]]:
    """The cluster's ServiceAccounts; inside a mutation, the map to change (made if missing),
    outside, a read (an empty map, nothing added to the state)."""
    accounts: dict[str, dict[str, Any]] = ctx.store.data["service_accounts"]
    if not ctx.store.changing:
        return accounts.get(cluster_uuid) or {}
    return accounts.setdefault(cluster_uuid, {})


def _sa_get(ctx: Context, cluster_uuid: str, ns: str, name: str) -> Response:
    with ctx.store.lock:
        stored = _accounts(ctx, cluster_uuid).get(f"{ns}/{name}")
        if stored is None:
            raise _not_found("serviceaccounts", name)
        return json_response(200, render(stored))


def _sa_list(ctx: Context, cluster_uuid: str, ns: str) -> Response:
    with ctx.store.lock:
        items = [
            render(stored)
            for key, stored in sorted(_accounts(ctx, cluster_uuid).items())
            if key.split("/", 1)[0] == ns
        ]
    return json_response(
        200,
        {"kind": "ServiceAccountList", "apiVersion": "v1", "metadata": {}, "items": items},
    )


def _body(request: Request) -> dict[str, Any]:
    def invalid(reason: str) -> KubeError:
        return KubeError(
            400, "BadRequest", f"the body of the request was in an unknown format: {reason}"
        )

    body = request.json(invalid)
    if not isinstance(body, dict):
        raise invalid("expected an object")
    return body


def _sa_patch(ctx: Context, request: Request, cluster_uuid: str, ns: str, name: str) -> Response:
    content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    manager = request.param("fieldManager")
    force = (request.param("force") or "").lower() == "true"
    body = _body(request)
    with ctx.store.mutation():
        accounts = _accounts(ctx, cluster_uuid)
        stored = accounts.get(f"{ns}/{name}")
        if content_type == "application/apply-patch+yaml":
            if not manager:
                raise KubeError(
                    400,
                    "BadRequest",
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                    "required for apply patch",
                )
            if stored is None:
                validate_new_name(ns, name)
            updated, created = apply(stored, ns, name, body, manager, force)
        elif content_type in {
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        }:
            if stored is None:
                raise _not_found("serviceaccounts", name)
            updated, created = merge_patch(stored, body, manager or "unknown"), False
        else:
            raise KubeError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/apply-patch+yaml, application/merge-patch+json; got "
                f"'{content_type}'",
            )
        accounts[f"{ns}/{name}"] = updated
        return json_response(201 if created else 200, render(updated))


def _sa_delete(ctx: Context, cluster_uuid: str, ns: str, name: str) -> Response:
    with ctx.store.mutation():
        stored = _accounts(ctx, cluster_uuid).pop(f"{ns}/{name}", None)
        if stored is None:
            raise _not_found("serviceaccounts", name)
        return json_response(200, render(stored))


def _rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mint_token(
    cluster: dict[str, Any],
    namespace: str,
    service_account: str,
    sa_uid: str,
    audiences: list[str],
    *,
    issued_at: int,
    lifetime: int,
) -> str:
    """A projected ServiceAccount token as kube-apiserver issues it, signed by the cluster key."""
    claims = {
        "aud": audiences,
        "exp": issued_at + lifetime,
        "iat": issued_at,
        "nbf": issued_at,
        "iss": cluster["issuer_url"],
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": sa_uid},
        },
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
    }
    return keys.sign(cluster["key"], claims)


def _token_request(
    ctx: Context, request: Request, cluster: dict[str, Any], ns: str, name: str
) -> Response:
    body = _body(request)
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise KubeError(400, "BadRequest", "spec must be an object")
    audiences = spec.get("audiences") or [cluster["issuer_url"]]
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise KubeError(400, "BadRequest", "spec.audiences must be a list of non-empty strings")
    expiration = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
    if isinstance(expiration, bool) or not isinstance(expiration, int):
        raise KubeError(400, "BadRequest", "spec.expirationSeconds must be an integer")
    if not MIN_EXPIRATION <= expiration <= MAX_EXPIRATION:
        reason = (
            "may not specify a duration less than 10 minutes"
            if expiration < MIN_EXPIRATION
            else "may not specify a duration larger than 2^32 seconds"
        )
        # kube-apiserver answers validation failures with 422 Invalid (errors.NewInvalid).
        raise KubeError(
            422,
            "Invalid",
            f'TokenRequest.authentication.k8s.io "{name}" is invalid: spec.expirationSeconds: '
            f"Invalid value: {expiration}: {reason}",
            {
                "name": name,
                "group": "authentication.k8s.io",
                "kind": "TokenRequest",
                "causes": [
                    {
                        "reason": "FieldValueInvalid",
                        "message": f"Invalid value: {expiration}: {reason}",
                        "field": "spec.expirationSeconds",
                    }
                ],
            },
        )
    with ctx.store.lock:
        stored = _accounts(ctx, cluster["uuid"]).get(f"{ns}/{name}")
        if stored is None:
            raise _not_found("serviceaccounts", name)
        sa_uid = stored["object"]["metadata"]["uid"]
    now = int(time.time())
    token = mint_token(cluster, ns, name, sa_uid, audiences, issued_at=now, lifetime=expiration)
    result_spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": expiration}
    if spec.get("boundObjectRef"):
        result_spec["boundObjectRef"] = spec["boundObjectRef"]
    return json_response(
        201,
        {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": _rfc3339(now)},
            "spec": result_spec,
            "status": {"token": token, "expirationTimestamp": _rfc3339(now + expiration)},
        },
    )
