"""Microsoft.ManagedIdentity: user-assigned identities (federated credentials: federated.py).

Implements AZURE-FACTS §1.1 and §2.5: 201/200 on PUT, 200/204 on DELETE, paged lists with
absolute nextLinks, the 3-128 character name rule and the required location. Deleting an
identity deletes its FICs; role assignments naming its principal are left behind, as in Azure.
"""

from __future__ import annotations

import re
import time
from typing import Any

from azure_emulator import armcommon as arm
from azure_emulator import inventory
from azure_emulator.context import Context
from azure_emulator.protocol import (
    ArmError,
    Request,
    Response,
    Route,
    empty_response,
    json_response,
    page,
)

UAMI_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
UAMI_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}$")

RG_PATTERN = r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)"
UAMI_PATTERN = r"/providers/microsoft\.managedidentity/userassignedidentities"
_LIST_SUB = re.compile(rf"^/subscriptions/(?P<sub>[^/]+){UAMI_PATTERN}/?$", re.IGNORECASE)
_LIST_RG = re.compile(rf"{RG_PATTERN}{UAMI_PATTERN}/?$", re.IGNORECASE)
_ONE = re.compile(rf"{RG_PATTERN}{UAMI_PATTERN}/(?P<name>[^/]+)/?$", re.IGNORECASE)


def identity_id(sub: str, rg: str, name: str) -> str:
    """The id as real ARM returns it: lower-case ``resourcegroups``, names as created."""
    return f"/subscriptions/{sub}/resourcegroups/{rg}/providers/{UAMI_TYPE}/{name}"


def route(ctx: Context, request: Request) -> Route | None:
    """Match the MSI paths; None if the request is for another provider."""
    method, path = request.method, request.path
    if m := _LIST_SUB.match(path):
        if method == "GET":
            return _route("uami.list", m["sub"], lambda: _list(ctx, request, m["sub"], None))
    elif m := _LIST_RG.match(path):
        if method == "GET":
            return _route("uami.list", m["sub"], lambda: _list(ctx, request, m["sub"], m["rg"]))
    elif m := _ONE.match(path):
        args = (ctx, request, m["sub"], m["rg"], m["name"])
        handlers = {"PUT": _put, "GET": _get, "PATCH": _patch, "DELETE": _delete}
        if method in handlers:
            handler = handlers[method]
            return _route(f"uami.{method.lower()}", m["sub"], lambda: handler(*args))
    else:
        return None
    return _route("arm.method_not_allowed", None, lambda: arm.method_not_allowed(method))


def _route(op: str, sub: str | None, handler: Any) -> Route:
    return Route(op, "arm", handler, faulty=True, subscription=sub)


def _render(record: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    return {
        "id": record["id"],
        "name": record["name"],
        "type": UAMI_TYPE,
        "location": record["location"],
        "tags": record["tags"],
        "properties": {
            "tenantId": tenant_id,
            "principalId": record["principal_id"],
            "clientId": record["client_id"],
            "isolationScope": record["isolation_scope"],
        },
        "systemData": arm.system_data(record),
    }


def check_group(ctx: Context, sub: str, rg: str) -> None:
    """404 under a resource group deleted out of band (inventory.check_group_exists)."""
    inventory.check_group_exists(ctx, f"/subscriptions/{sub}/resourceGroups/{rg}")


def lookup(ctx: Context, sub: str, rg: str, name: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = ctx.store.data["identities"].get(
        identity_id(sub, rg, name).lower()
    )
    return record


def _tags(body: dict[str, Any]) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ArmError(400, "InvalidRequestContent", "Tags must be an object of string values.")
    return dict(tags)


def _isolation_scope(body: dict[str, Any], current: str) -> str:
    properties = body.get("properties") or {}
    scope = properties.get("isolationScope", current) if isinstance(properties, dict) else current
    for allowed in ("None", "Regional"):
        if str(scope).lower() == allowed.lower():
            return allowed
    raise ArmError(
        400, "InvalidRequestContent", f"The isolationScope '{scope}' is invalid: None, Regional."
    )


def _put(ctx: Context, request: Request, sub: str, rg: str, name: str) -> Response:
    arm.check_subscription(sub)
    check_group(ctx, sub, rg)
    if not UAMI_NAME.match(name):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"Resource name '{name}' is invalid. The name can contain only letters, numbers, "
            "underscores and hyphens. The name must start with a letter or number and be 3 to "
            "128 characters long.",
        )
    body = arm.json_object(request)
    location = body.get("location")
    if not isinstance(location, str) or not location.strip():
        raise ArmError(
            400, "LocationRequired", "The location property is required for this definition."
        )
    location = arm.normalise_location(location)
    tags = _tags(body)
    who = arm.caller(request.caller)["id"]
    with ctx.store.mutation() as data:
        existing = lookup(ctx, sub, rg, name)
        now = time.time()
        record: dict[str, Any]
        if existing is None:
            record = {
                "id": identity_id(sub, rg, name),
                "subscription_id": sub,
                "resource_group": rg,
                "name": name,
                "location": location,
                "tags": tags or {},
                "client_id": arm.new_guid(),
                "principal_id": arm.new_guid(),
                "isolation_scope": _isolation_scope(body, "None"),
                "created_at": now,
                "created_by": who,
                "updated_at": now,
                "updated_by": who,
            }
            data["identities"][record["id"].lower()] = record
            status = 201
        else:
            if existing["location"] != location:
                raise ArmError(
                    400,
                    "InvalidResourceLocation",
                    f"The resource '{existing['name']}' already exists in location "
                    f"'{existing['location']}' in resource group '{existing['resource_group']}'. "
                    f"A resource with the same name cannot be created in location '{location}'. "
                    "Please select a new resource name.",
                )
            record = existing
            record.update(
                tags=tags or {},
                isolation_scope=_isolation_scope(body, record["isolation_scope"]),
                updated_at=now,
                updated_by=who,
            )
            status = 200
        return json_response(status, _render(record, ctx.store.tenant_id))


def _get(ctx: Context, request: Request, sub: str, rg: str, name: str) -> Response:
    arm.check_subscription(sub)
    check_group(ctx, sub, rg)
    with ctx.store.lock:
        record = lookup(ctx, sub, rg, name)
        if record is None:
            raise arm.resource_not_found(UAMI_TYPE, name, rg)
        return json_response(200, _render(record, ctx.store.tenant_id))


def _patch(ctx: Context, request: Request, sub: str, rg: str, name: str) -> Response:
    # UserAssignedIdentities_Update: PATCH with an `IdentityUpdate` body whose `tags`, when
    # given, become the identity's tags; answered 200 with the whole identity. Source: spec
    # specification/msi/resource-manager/Microsoft.ManagedIdentity/stable/2024-11-30/
    # ManagedIdentity.json and its example IdentityUpdate.json (request {"location", "tags"},
    # response 200 with the new tags); the ownership transfer's tag update relies on it.
    arm.check_subscription(sub)
    check_group(ctx, sub, rg)
    body = arm.json_object(request)
    tags = _tags(body)
    with ctx.store.mutation() as data:
        record = lookup(ctx, sub, rg, name)
        if record is None:
            raise arm.resource_not_found(UAMI_TYPE, name, rg)
        isolation_scope = _isolation_scope(body, record["isolation_scope"])
        if tags is not None:
            record["tags"] = tags
        record.update(
            isolation_scope=isolation_scope,
            updated_at=time.time(),
            updated_by=arm.caller(request.caller)["id"],
        )
        data["identities"][record["id"].lower()] = record
        return json_response(200, _render(record, ctx.store.tenant_id))


def _delete(ctx: Context, request: Request, sub: str, rg: str, name: str) -> Response:
    arm.check_subscription(sub)
    check_group(ctx, sub, rg)
    with ctx.store.mutation() as data:
        key = identity_id(sub, rg, name).lower()
        if data["identities"].pop(key, None) is None:
            return empty_response(204)
        data["fics"].pop(key, None)
        return empty_response(200)


def _list(ctx: Context, request: Request, sub: str, rg: str | None) -> Response:
    arm.check_subscription(sub)
    if rg is not None:
        check_group(ctx, sub, rg)
    with ctx.store.lock:
        records = [
            record
            for record in ctx.store.data["identities"].values()
            if record["subscription_id"].lower() == sub.lower()
            and (rg is None or record["resource_group"].lower() == rg.lower())
        ]
        items = [
            _render(r, ctx.store.tenant_id) for r in sorted(records, key=lambda r: r["id"].lower())
        ]
    return json_response(
        200, page(request, items, page_size=ctx.knobs["page_size"], skip_param="$skiptoken")
    )
