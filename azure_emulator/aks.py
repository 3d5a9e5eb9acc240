"""Sandbox AKS clusters: registration (control API) and the ARM managedClusters surface.

A registered cluster has its own RS256 key, a static API token and an OIDC issuer URL
``<public-url>/oidc/<uuid>/`` fixed at registration (a real issuer never changes, so neither does
this one; restart the emulator on the same port to keep issuers reachable). ARM GET returns
``oidcIssuerProfile.issuerURL`` with that exact casing and trailing slash (AZURE-FACTS §1.5), and
``listClusterUserCredential`` returns a kubeconfig for the cluster's emulated Kubernetes API.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from typing import Any

from azure_emulator import armcommon as arm
from azure_emulator import keys
from azure_emulator.context import Context
from azure_emulator.protocol import Request, Response, Route, json_response, page

AKS_TYPE = "Microsoft.ContainerService/managedClusters"
KUBERNETES_VERSION = "1.30.6"
# Where a cluster without the OIDC issuer feature says its tokens come from.
IN_CLUSTER_ISSUER = "https://kubernetes.default.svc.cluster.local"

_RG = r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)"
_PROVIDER = r"/providers/microsoft\.containerservice/managedclusters"
_LIST_SUB = re.compile(rf"^/subscriptions/(?P<sub>[^/]+){_PROVIDER}/?$", re.I)
_LIST_RG = re.compile(rf"{_RG}{_PROVIDER}/?$", re.I)
_ONE = re.compile(rf"{_RG}{_PROVIDER}/(?P<name>[^/]+)/?$", re.I)
_CREDENTIAL = re.compile(rf"{_RG}{_PROVIDER}/(?P<name>[^/]+)/listclusterusercredential/?$", re.I)


class RegistrationError(ValueError):
    """A cluster registration request was refused; the message says why."""


def resource_id(cluster: dict[str, Any]) -> str:
    return (
        f"/subscriptions/{cluster['subscription_id']}/resourcegroups/{cluster['resource_group']}"
        f"/providers/{AKS_TYPE}/{cluster['name']}"
    )


def api_url(base_url: str, cluster: dict[str, Any]) -> str:
    """The cluster's Kubernetes API under the base URL the caller used to reach us.

    Unlike the issuer (fixed at registration), this follows the caller, so a container that
    reaches the emulator as ``https://emulator:8443`` gets a kubeconfig it can use.
    """
    return f"{base_url}/k8s/{cluster['uuid']}"


def register(ctx: Context, spec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Register a sandbox cluster; idempotent on (subscription, resource group, name).

    Returns ``(cluster, created)``.
    """
    sub, rg, name = spec.get("subscription_id"), spec.get("resource_group"), spec.get("name")
    if not isinstance(sub, str) or not arm.is_guid(sub):
        raise RegistrationError("subscription_id must be a GUID")
    for label, value in (("resource_group", rg), ("name", name)):
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][-\w.()]{0,89}", value):
            raise RegistrationError(f"{label} must be 1-90 characters: letters, digits, -_.()")
    flags = {}
    for flag in ("oidc_issuer_enabled", "workload_identity_enabled"):
        flags[flag] = spec.get(flag, True)
        if not isinstance(flags[flag], bool):
            raise RegistrationError(f"{flag} must be true or false")
    location = spec.get("location", "eastus")
    if not isinstance(location, str) or not location:
        raise RegistrationError("location must be a non-empty string")
    with ctx.store.mutation() as data:
        existing = find(ctx, str(sub), str(rg), str(name))
        if existing is not None:
            return existing, False
        cluster_uuid = str(uuid.uuid4())
        oidc = flags["oidc_issuer_enabled"]
        cluster = {
            "uuid": cluster_uuid,
            "subscription_id": sub,
            "resource_group": rg,
            "name": name,
            "location": arm.normalise_location(location),
            "oidc_issuer_enabled": oidc,
            "workload_identity_enabled": flags["workload_identity_enabled"],
            "issuer_url": f"{ctx.public_url}/oidc/{cluster_uuid}/" if oidc else IN_CLUSTER_ISSUER,
            "token": secrets.token_urlsafe(32),
            "key": keys.generate(),
            "created_at": time.time(),
        }
        data["clusters"][cluster_uuid] = cluster
        data["service_accounts"][cluster_uuid] = {}
        return cluster, True


def view(base_url: str, cluster: dict[str, Any]) -> dict[str, Any]:
    """What the control API shows for a cluster (everything a test needs, no private key)."""
    return {
        "id": cluster["uuid"],
        "resource_id": resource_id(cluster),
        "subscription_id": cluster["subscription_id"],
        "resource_group": cluster["resource_group"],
        "name": cluster["name"],
        "location": cluster["location"],
        "oidc_issuer_enabled": cluster["oidc_issuer_enabled"],
        "workload_identity_enabled": cluster["workload_identity_enabled"],
        "issuer_url": cluster["issuer_url"],
        "k8s_api_url": api_url(base_url, cluster),
        "token": cluster["token"],
        "kubernetes_version": KUBERNETES_VERSION,
    }


def find(ctx: Context, sub: str, rg: str, name: str) -> dict[str, Any] | None:
    wanted = (sub.lower(), rg.lower(), name.lower())
    for cluster in ctx.store.data["clusters"].values():
        key = (cluster["subscription_id"].lower(), cluster["resource_group"].lower())
        if (*key, cluster["name"].lower()) == wanted:
            return dict(cluster)
    return None


def route(ctx: Context, request: Request) -> Route | None:
    """Match the managedClusters paths."""
    method, path = request.method, request.path
    if (m := _LIST_SUB.match(path)) and method == "GET":
        return _route("aks.list", m["sub"], lambda: _list(ctx, request, m["sub"], None))
    if (m := _LIST_RG.match(path)) and method == "GET":
        return _route("aks.list", m["sub"], lambda: _list(ctx, request, m["sub"], m["rg"]))
    if (m := _ONE.match(path)) and method == "GET":
        return _route("aks.get", m["sub"], lambda: _get(ctx, m["sub"], m["rg"], m["name"]))
    if (m := _CREDENTIAL.match(path)) and method == "POST":
        return _route(
            "aks.credential",
            m["sub"],
            lambda: _credential(ctx, request, m["sub"], m["rg"], m["name"]),
        )
    return None


def _route(op: str, sub: str, handler: Any) -> Route:
    return Route(op, "arm", handler, faulty=True, subscription=sub)


def _render(cluster: dict[str, Any]) -> dict[str, Any]:
    oidc: dict[str, Any] = {"enabled": cluster["oidc_issuer_enabled"]}
    if cluster["oidc_issuer_enabled"]:
        oidc["issuerURL"] = cluster["issuer_url"]
    return {
        "id": resource_id(cluster),
        "name": cluster["name"],
        "type": "Microsoft.ContainerService/ManagedClusters",
        "location": cluster["location"],
        "properties": {
            "provisioningState": "Succeeded",
            "powerState": {"code": "Running"},
            "kubernetesVersion": KUBERNETES_VERSION,
            "currentKubernetesVersion": KUBERNETES_VERSION,
            "dnsPrefix": cluster["name"],
            "oidcIssuerProfile": oidc,
            "securityProfile": {
                "workloadIdentity": {"enabled": cluster["workload_identity_enabled"]}
            },
        },
    }


def _existing(ctx: Context, sub: str, rg: str, name: str) -> dict[str, Any]:
    arm.check_subscription(sub)
    with ctx.store.lock:
        cluster = find(ctx, sub, rg, name)
    if cluster is None:
        raise arm.resource_not_found(AKS_TYPE, name, rg)
    return cluster


def _get(ctx: Context, sub: str, rg: str, name: str) -> Response:
    return json_response(200, _render(_existing(ctx, sub, rg, name)))


def _list(ctx: Context, request: Request, sub: str, rg: str | None) -> Response:
    arm.check_subscription(sub)
    with ctx.store.lock:
        clusters = [
            c
            for c in ctx.store.data["clusters"].values()
            if c["subscription_id"].lower() == sub.lower()
            and (rg is None or c["resource_group"].lower() == rg.lower())
        ]
    items = [_render(c) for c in sorted(clusters, key=lambda c: resource_id(c).lower())]
    return json_response(
        200, page(request, items, page_size=ctx.knobs["page_size"], skip_param="$skiptoken")
    )


def kubeconfig(ctx: Context, base_url: str, cluster: dict[str, Any]) -> dict[str, Any]:
    """A kubeconfig (as data) for the cluster's API with its static bearer token user."""
    user = f"clusterUser_{cluster['resource_group']}_{cluster['name']}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster["name"],
                "cluster": {
                    "server": api_url(base_url, cluster),
                    "certificate-authority-data": base64.b64encode(ctx.ca_pem).decode("ascii"),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": cluster["token"]}}],
        "contexts": [
            {"name": cluster["name"], "context": {"cluster": cluster["name"], "user": user}}
        ],
        "current-context": cluster["name"],
        "preferences": {},
    }


def _credential(ctx: Context, request: Request, sub: str, rg: str, name: str) -> Response:
    cluster = _existing(ctx, sub, rg, name)
    # JSON is valid YAML, so kubectl and the kubernetes client read this kubeconfig as is.
    document = json.dumps(kubeconfig(ctx, request.base_url, cluster), indent=2).encode()
    value = base64.b64encode(document).decode("ascii")
    return json_response(200, {"kubeconfigs": [{"name": "clusterUser", "value": value}]})


def unregister(ctx: Context, cluster_uuid: str) -> bool:
    """Forget a cluster and its ServiceAccounts; False if it was not registered."""
    with ctx.store.mutation() as data:
        data["service_accounts"].pop(cluster_uuid, None)
        return data["clusters"].pop(cluster_uuid, None) is not None
