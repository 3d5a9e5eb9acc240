"""The control API under ``/_emulator/``: for tests, scripts and benchmarks, never for the portal.

No ARM authentication, no latency and no faults; loopback clients only (unless the process was
started with ``--allow-remote-control``). Errors use the ARM envelope with codes of our own.

| method | path | does |
|---|---|---|
| GET | health | liveness, the URL and the tenant id |
| GET | state | every resource (no private keys, secrets or cluster tokens) |
| POST | reset | drop resources; ``{"config": true}`` also restores the start knobs, \
``{"requests": true}`` also truncates the request log |
| GET / PATCH | config | read / partially update the knobs |
| POST / GET | clusters | register (201, or 200 if it already exists) / list sandbox clusters |
| GET / DELETE | clusters/{id} | one cluster / forget it |
| POST | clusters/{id}/token | mint a ServiceAccount token with chosen times (see ``_mint``) |
| POST / GET | principals | add / list extra directory principals (``{"id", "type"}``) |
| POST / GET | users | add (or replace, by username) / list directory users who can sign in \
(``{"username", "name", "email", "groups": [object ids], "oid", "overage"}``) |
| GET | requests?since=N | the request log from line N: ``{"requests": [...], "next": M}`` |
| POST / GET | resources | register (201) / list the resource inventory (``inventory.py``): \
``{"resources": [{"id", "location", "tags"}]}`` or one such object; list filters ``type``, \
``subscriptionId``, ``resourceGroup`` |
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from azure_emulator import aks, inventory, kube, signin
from azure_emulator import armcommon as arm
from azure_emulator.context import Context
from azure_emulator.knobs import KnobError
from azure_emulator.protocol import (
    ArmError,
    Request,
    Response,
    Route,
    empty_response,
    json_response,
)
from azure_emulator.rbac import PRINCIPAL_TYPES

PREFIX = "/_emulator/"


def route(ctx: Context, request: Request) -> Route | None:
    """Match ``/_emulator/...``; an unknown control path is a 404 of the control family."""
    if not request.path.startswith(PREFIX):
        return None
    rest = request.path[len(PREFIX) :].strip("/")
    key = (request.method, rest)
    simple = {
        ("GET", "health"): _health,
        ("GET", "state"): _state,
        ("POST", "reset"): _reset,
        ("GET", "config"): _config_get,
        ("PATCH", "config"): _config_patch,
        ("POST", "clusters"): _clusters_post,
        ("GET", "clusters"): _clusters_list,
        ("POST", "principals"): _principals_post,
        ("GET", "principals"): _principals_list,
        ("GET", "requests"): _requests,
        ("POST", "users"): _users_post,
        ("GET", "users"): _users_list,
        ("POST", "resources"): _resources_post,
        ("GET", "resources"): _resources_list,
        ("DELETE", "resources"): _resources_delete,
    }
    if key in simple:
        handler = simple[key]
        return Route(f"control.{rest}", "control", lambda: handler(ctx, request))
    if m := re.fullmatch(r"clusters/(?P<id>[0-9a-fA-F-]{36})", rest):
        cluster_id = m["id"].lower()
        if request.method == "GET":
            return Route(
                "control.cluster", "control", lambda: _cluster_get(ctx, request, cluster_id)
            )
        if request.method == "DELETE":
            return Route("control.cluster", "control", lambda: _cluster_delete(ctx, cluster_id))
    if m := re.fullmatch(r"clusters/(?P<id>[0-9a-fA-F-]{36})/token", rest):
        cluster_id = m["id"].lower()
        if request.method == "POST":
            return Route("control.token", "control", lambda: _mint(ctx, request, cluster_id))
    return Route("control.unknown", "control", lambda: _unknown(request))


def _unknown(request: Request) -> Response:
    raise ArmError(
        404, "UnknownControlEndpoint", f"No control endpoint {request.method} {request.path}"
    )


def _body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    body = request.json(lambda reason: ArmError(400, "InvalidJson", reason))
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidJson", "the body must be a JSON object")
    return body


def _health(ctx: Context, request: Request) -> Response:
    return json_response(
        200, {"status": "ok", "url": ctx.public_url, "tenant_id": ctx.store.tenant_id}
    )


def _state(ctx: Context, request: Request) -> Response:
    return json_response(200, ctx.store.snapshot())


def _reset(ctx: Context, request: Request) -> Response:
    body = _body(request)
    ctx.store.reset()
    with ctx.fic_busy_lock:
        ctx.fic_busy_until.clear()
    if body.get("config"):
        ctx.restore_knobs()
    if body.get("requests"):
        ctx.log.clear()
    return json_response(200, {"status": "reset", "config": dict(ctx.knobs)})


def _config_get(ctx: Context, request: Request) -> Response:
    return json_response(200, dict(ctx.knobs))


def _config_patch(ctx: Context, request: Request) -> Response:
    try:
        updated = ctx.update_knobs(_body(request))
    except KnobError as exc:
        raise ArmError(400, "InvalidKnob", str(exc)) from None
    return json_response(200, dict(updated))


def _clusters_post(ctx: Context, request: Request) -> Response:
    try:
        cluster, created = aks.register(ctx, _body(request))
    except aks.RegistrationError as exc:
        raise ArmError(400, "InvalidCluster", str(exc)) from None
    return json_response(201 if created else 200, aks.view(request.base_url, cluster))


def _clusters_list(ctx: Context, request: Request) -> Response:
    with ctx.store.lock:
        clusters = [dict(c) for c in ctx.store.data["clusters"].values()]
    clusters.sort(key=lambda c: c["created_at"])
    return json_response(200, {"value": [aks.view(request.base_url, c) for c in clusters]})


def _cluster_get(ctx: Context, request: Request, cluster_id: str) -> Response:
    with ctx.store.lock:
        cluster = ctx.store.data["clusters"].get(cluster_id)
        cluster = dict(cluster) if cluster else None
    if cluster is None:
        raise ArmError(404, "UnknownCluster", f"No cluster {cluster_id}")
    return json_response(200, aks.view(request.base_url, cluster))


def _mint(ctx: Context, request: Request, cluster_id: str) -> Response:
    """A ServiceAccount token with test-chosen times, e.g. an already expired one.

    Body: ``namespace``, ``service_account``, ``audiences`` (default the AKS exchange audience),
    ``lifetime_seconds`` (default 3600) and ``issued_at_offset_seconds`` (default 0; negative
    values back-date the token). The ServiceAccount need not exist.
    """
    body = _body(request)
    with ctx.store.lock:
        cluster = ctx.store.data["clusters"].get(cluster_id)
        cluster = dict(cluster) if cluster else None
    if cluster is None:
        raise ArmError(404, "UnknownCluster", f"No cluster {cluster_id}")
    namespace, account = body.get("namespace"), body.get("service_account")
    audiences = body.get("audiences", ["api://AzureADTokenExchange"])
    lifetime, offset = body.get("lifetime_seconds", 3600), body.get("issued_at_offset_seconds", 0)
    if (
        not isinstance(namespace, str)
        or not isinstance(account, str)
        or not namespace
        or not account
    ):
        raise ArmError(400, "InvalidToken", "namespace and service_account are required strings")
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise ArmError(400, "InvalidToken", "audiences must be a list of strings")
    if not isinstance(lifetime, int) or not isinstance(offset, int):
        raise ArmError(
            400, "InvalidToken", "lifetime_seconds and issued_at_offset_seconds are integers"
        )
    issued_at = int(time.time()) + offset
    token = kube.mint_token(
        cluster,
        namespace,
        account,
        str(uuid.uuid4()),
        audiences,
        issued_at=issued_at,
        lifetime=lifetime,
    )
    return json_response(200, {"token": token, "issuer": cluster["issuer_url"]})


def _cluster_delete(ctx: Context, cluster_id: str) -> Response:
    return empty_response(200 if aks.unregister(ctx, cluster_id) else 204)


def _principals_post(ctx: Context, request: Request) -> Response:
    body = _body(request)
    principal_id, principal_type = body.get("id"), body.get("type", "User")
    if not isinstance(principal_id, str) or not arm.is_guid(principal_id):
        raise ArmError(400, "InvalidPrincipal", "id must be a GUID")
    if principal_type not in PRINCIPAL_TYPES:
        raise ArmError(400, "InvalidPrincipal", f"type must be one of {', '.join(PRINCIPAL_TYPES)}")
    record = {
        "id": principal_id.lower(),
        "type": principal_type,
        "display_name": str(body.get("display_name", "")),
    }
    with ctx.store.mutation() as data:
        data["principals"][record["id"]] = record
    return json_response(201, record)


def _principals_list(ctx: Context, request: Request) -> Response:
    with ctx.store.lock:
        return json_response(200, {"value": list(ctx.store.data["principals"].values())})


def _resource_row(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ArmError(400, "InvalidResource", "each resource must be an object")
    resource_id = item.get("id")
    if resource_id is None and item.get("subscription_id"):
        resource_id = f"/subscriptions/{item['subscription_id']}"
        if item.get("resource_group"):
            resource_id += f"/resourceGroups/{item['resource_group']}"
            if item.get("type") and item.get("name"):
                resource_id += f"/providers/{item['type']}/{item['name']}"
    if not isinstance(resource_id, str):
        raise ArmError(400, "InvalidResource", "a resource needs an id (or subscription_id, ...)")
    location = item.get("location", "")
    if not isinstance(location, str):
        raise ArmError(400, "InvalidResource", "location must be a string")
    try:
        return inventory.entry(
            resource_id,
            location=arm.normalise_location(location) if location else "",
            tags=item.get("tags") or {},
        )
    except inventory.InventoryError as exc:
        raise ArmError(400, "InvalidResource", str(exc)) from None


def _resources_post(ctx: Context, request: Request) -> Response:
    body = _body(request)
    items = body.get("resources") if "resources" in body else [body]
    if not isinstance(items, list):
        raise ArmError(400, "InvalidResource", "resources must be a list")
    rows = [_resource_row(item) for item in items]  # all validated before any is stored
    return json_response(201, {"value": inventory.register(ctx, rows)})


def _resources_delete(ctx: Context, request: Request) -> Response:
    group_id = request.param("id") or ""
    try:
        removed = inventory.delete_group(ctx, group_id)
    except inventory.InventoryError as exc:
        raise ArmError(400, "InvalidResource", str(exc)) from None
    return json_response(200, {"deleted": group_id, "removed": removed})


def _resources_list(ctx: Context, request: Request) -> Response:
    wanted = {key: request.param(key) for key in ("type", "subscriptionId", "resourceGroup")}
    found = [
        row
        for row in inventory.rows(ctx)
        if all(
            value is None or str(row.get(key) or "").lower() == value.lower()
            for key, value in wanted.items()
        )
    ]
    return json_response(200, {"value": found})


def _requests(ctx: Context, request: Request) -> Response:
    raw = request.param("since") or "0"
    if not raw.isdigit():
        raise ArmError(400, "InvalidSince", "since must be a non-negative integer")
    entries, next_line = ctx.log.read(int(raw))
    return json_response(200, {"requests": entries, "next": next_line})


def _users_post(ctx: Context, request: Request) -> Response:
    try:
        return json_response(201, signin.user_register(ctx, _body(request)))
    except ValueError as exc:
        raise ArmError(400, "InvalidUser", str(exc)) from None


def _users_list(ctx: Context, request: Request) -> Response:
    with ctx.store.lock:
        return json_response(200, {"value": list(ctx.store.data["users"].values())})
