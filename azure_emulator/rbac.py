"""Microsoft.Authorization (2022-04-01) role assignments at any scope (definitions: roledefs.py).

Implements AZURE-FACTS §1.3, §2.1 and §2.2. Assignment names are GUIDs unique across the
tenant; the (scope, principal, role GUID) triple is unique; role definitions are compared by
their trailing GUID; ``principalType`` defaults to User; a principal that is unknown, or a new
UAMI still inside the replication delay, gets ``PrincipalNotFound``.
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
from azure_emulator.roles import BY_GUID

RA_TYPE = "Microsoft.Authorization/roleAssignments"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")

_RA_ONE = re.compile(
    r"^(?P<scope>.*)/providers/microsoft\.authorization/roleassignments/(?P<name>[^/]+)/?$", re.I
)
_RA_LIST = re.compile(r"^(?P<scope>.*)/providers/microsoft\.authorization/roleassignments/?$", re.I)
_ROLE_ID = re.compile(
    r"/providers/microsoft\.authorization/roledefinitions/(?P<guid>[^/]+)/?$", re.I
)
_PRINCIPAL_EQ = re.compile(r"principalId\s+eq\s+'?(?P<id>[0-9a-fA-F-]{32,36})'?", re.I)
_ASSIGNED_TO = re.compile(r"assignedTo\('(?P<id>[0-9a-fA-F-]{32,36})'\)", re.I)


def route(ctx: Context, request: Request) -> Route | None:
    """Match role assignment paths at any scope (GetById/DeleteById are the same paths)."""
    method, path = request.method, request.path
    if m := _RA_ONE.match(path):
        scope, name = arm.normalise_scope(m["scope"]), m["name"]
        handlers = {"PUT": _ra_put, "GET": _ra_get, "DELETE": _ra_delete}
        if method in handlers:
            handler = handlers[method]
            return _route(f"ra.{method.lower()}", scope, lambda: handler(ctx, request, scope, name))
    elif m := _RA_LIST.match(path):
        scope = arm.normalise_scope(m["scope"])
        if method == "GET":
            return _route("ra.list", scope, lambda: _ra_list(ctx, request, scope))
    else:
        return None
    return _route("arm.method_not_allowed", "/", lambda: arm.method_not_allowed(method))


def _route(op: str, scope: str, handler: Any) -> Route:
    return Route(op, "arm", handler, faulty=True, subscription=arm.subscription_of(scope))


def _nodash(guid: str) -> str:
    return guid.replace("-", "").lower()


def _under(child: str, parent: str) -> bool:
    """True when ``child`` is strictly below ``parent`` (both normalised scopes)."""
    if parent == "/":
        return child != "/"
    return child.lower().startswith(parent.lower() + "/")


def _ra_id(scope: str, name: str) -> str:
    prefix = "" if scope == "/" else scope
    return f"{prefix}/providers/{RA_TYPE}/{name}"


def _ra_render(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _ra_id(record["scope"], record["name"]),
        "name": record["name"],
        "type": RA_TYPE,
        "properties": {
            "roleDefinitionId": record["role_definition_id"],
            "principalId": record["principal_id"],
            "principalType": record["principal_type"],
            "scope": record["scope"],
            "description": record["description"],
            "condition": record["condition"],
            "conditionVersion": record["condition_version"],
            "delegatedManagedIdentityResourceId": record["delegated_managed_identity_resource_id"],
            "createdOn": arm.iso(record["created_at"]),
            "updatedOn": arm.iso(record["updated_at"]),
            "createdBy": record["created_by"],
            "updatedBy": record["updated_by"],
        },
    }


def _invalid(message: str) -> ArmError:
    return ArmError(400, "InvalidRequestContent", f"The request content was invalid: {message}")


invalid = _invalid


def emulator_now(ctx: Context) -> float:
    """The emulator's clock: real time moved on by the `clock_offset_seconds` knob (tests let
    time pass to see time-bound assignments end)."""
    return time.time() + float(ctx.knobs["clock_offset_seconds"])


def remove_expired(ctx: Context) -> None:
    """Drop time-bound assignments (made by a schedule request, see schedules.py) whose end has
    passed: Azure ends a time-bound active assignment at its endDateTime, whether or not anyone
    acts (AZURE-FACTS §9, from the PIM pages on Learn; not yet tried against a real tenant)."""
    now = emulator_now(ctx)
    with ctx.store.lock:
        due = [
            key
            for key, record in ctx.store.data["role_assignments"].items()
            if record.get("expires_at") is not None and record["expires_at"] <= now
        ]
    if due:
        with ctx.store.mutation() as data:
            for key in due:
                data["role_assignments"].pop(key, None)


def _ra_properties(request: Request) -> dict[str, Any]:
    body = arm.json_object(request)
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise _invalid("'properties' is required.")
    role_definition_id, principal_id = (
        properties.get("roleDefinitionId"),
        properties.get("principalId"),
    )
    if not isinstance(role_definition_id, str) or not role_definition_id:
        raise _invalid("'roleDefinitionId' is required.")
    if not isinstance(principal_id, str) or not principal_id:
        raise _invalid("'principalId' is required.")
    if not arm.is_guid(principal_id):
        raise ArmError(
            400, "InvalidPrincipalId", "A valid principal ID must be provided for role assignment."
        )
    m = _ROLE_ID.search(role_definition_id)
    role_guid = m["guid"].lower() if m else role_definition_id.rsplit("/", 1)[-1].lower()
    if role_guid not in BY_GUID:
        raise ArmError(
            400,
            "RoleDefinitionDoesNotExist",
            f"The specified role definition with ID '{_nodash(role_guid)}' does not exist.",
        )
    raw_type = properties.get("principalType")
    principal_type = None
    if raw_type is not None:
        principal_type = next(
            (t for t in PRINCIPAL_TYPES if t.lower() == str(raw_type).lower()), None
        )
        if principal_type is None:
            raise _invalid(
                f"principalType '{raw_type}' is not one of {', '.join(PRINCIPAL_TYPES)}."
            )
    return {
        "role_definition_id": role_definition_id,
        "role_guid": role_guid,
        "principal_id": principal_id.lower(),
        "explicit_type": principal_type,
        "principal_type": principal_type or "User",
        "description": properties.get("description"),
        "condition": properties.get("condition"),
        "condition_version": properties.get("conditionVersion"),
        "delegated_managed_identity_resource_id": properties.get(
            "delegatedManagedIdentityResourceId"
        ),
    }


def _directory_principal(ctx: Context, principal_id: str) -> tuple[str, float] | None:
    """The principal's (type, created_at) if the emulated directory knows it."""
    data = ctx.store.data
    if principal_id == data["portal"]["object_id"]:
        return "ServicePrincipal", 0.0
    extra = data["principals"].get(principal_id)
    if extra is not None:
        return str(extra["type"]), 0.0
    for identity in data["identities"].values():
        if identity["principal_id"] == principal_id:
            return "ServicePrincipal", float(identity["created_at"])
    return None


def _check_principal(ctx: Context, wanted: dict[str, Any]) -> None:
    principal_id, explicit = wanted["principal_id"], wanted["explicit_type"]
    found = _directory_principal(ctx, principal_id)
    delay = float(ctx.knobs["principal_replication_delay_seconds"])
    replicating = found is not None and time.time() - found[1] < delay
    if replicating and explicit is not None and not ctx.knobs["principal_not_found_even_with_type"]:
        return  # ARM trusts an explicit principalType and skips the directory lookup.
    if found is None or replicating:
        raise ArmError(
            400,
            "PrincipalNotFound",
            f"Principal {_nodash(principal_id)} does not exist in the directory "
            f"{ctx.store.tenant_id}. Check that you have the correct principal ID. If you are "
            "creating this principal and then immediately assigning a role, this error might be "
            "related to a replication delay. In this case, set the role assignment principalType "
            "property to a value, such as ServicePrincipal, User, or Group.  "
            "See https://aka.ms/docs-principaltype",
        )
    if explicit is not None and explicit != found[0]:
        # Real ARM's text, typo ("PrinciaplType") and stray space included.
        raise ArmError(
            400,
            "UnmatchedPrincipalType",
            f"The PrincipalId '{_nodash(principal_id)}' has type '{found[0]}' , which is "
            f"different from specified PrinciaplType '{explicit}'.",
        )


def _ra_put(ctx: Context, request: Request, scope: str, name: str) -> Response:
    arm.check_scope(scope)
    inventory.check_scope_exists(ctx, scope)
    if not arm.is_guid(name):
        raise ArmError(
            400,
            "InvalidRoleAssignmentId",
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
        )
    wanted = _ra_properties(request)
    with ctx.store.mutation() as data:
        assignments: dict[str, dict[str, Any]] = data["role_assignments"]
        existing = assignments.get(name.lower())
        now, who = time.time(), arm.caller(request.caller)["id"]
        if existing is not None:
            same = (
                existing["scope"].lower() == scope.lower()
                and existing["principal_id"] == wanted["principal_id"]
                and existing["role_guid"] == wanted["role_guid"]
            )
            if not same:
                raise ArmError(
                    400,
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be "
                    "updated.",
                )
            for key in ("description", "condition", "condition_version"):
                existing[key] = wanted[key]
            existing.update(updated_at=now, updated_by=who)
            return json_response(200, _ra_render(existing))
        _check_principal(ctx, wanted)
        for other in assignments.values():
            if (
                other["scope"].lower() == scope.lower()
                and other["principal_id"] == wanted["principal_id"]
                and other["role_guid"] == wanted["role_guid"]
            ):
                raise ArmError(
                    409,
                    "RoleAssignmentExists",
                    "The role assignment already exists. The ID of the existing role assignment "
                    f"is {_nodash(other['name'])}.",
                )
        wanted.pop("explicit_type")
        record = {
            "name": name.lower(),
            "scope": scope,
            **wanted,
            "created_at": now,
            "created_by": who,
            "updated_at": now,
            "updated_by": who,
        }
        assignments[name.lower()] = record
        rendered = _ra_render(record)
        answered = ctx.knobs["role_assignment_answer_scope"]
        if answered is not None:
            # Fault injection, not ARM behaviour: ARM answers the scope the assignment was made
            # on (RoleAssignments_CreateForResource.json in the 2022-04-01 spec examples). The
            # knob lets a test see the engine refuse any other answer (AZURE-FACTS §1.3).
            rendered["properties"]["scope"] = answered
        return json_response(201, rendered)


def _ra_at(ctx: Context, scope: str, name: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = ctx.store.data["role_assignments"].get(name.lower())
    if record is None or record["scope"].lower() != scope.lower():
        return None
    return record


def _ra_get(ctx: Context, request: Request, scope: str, name: str) -> Response:
    arm.check_scope(scope)
    inventory.check_group_exists(ctx, scope)
    remove_expired(ctx)
    with ctx.store.lock:
        record = _ra_at(ctx, scope, name)
        if record is None:
            raise ArmError(
                404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found."
            )
        return json_response(200, _ra_render(record))


def _ra_delete(ctx: Context, request: Request, scope: str, name: str) -> Response:
    arm.check_scope(scope)
    inventory.check_group_exists(ctx, scope)
    with ctx.store.mutation() as data:
        record = _ra_at(ctx, scope, name)
        if record is None:
            return empty_response(204)
        del data["role_assignments"][name.lower()]
        return json_response(200, _ra_render(record))


def _parse_filter(raw: str | None) -> tuple[bool, str | None]:
    """``(at_scope, principal_id)`` from a role assignment ``$filter``; 400 if not understood."""
    if not raw:
        return False, None
    at_scope, principal = False, None
    for clause in re.split(r"\s+and\s+", raw.strip(), flags=re.I):
        named = _PRINCIPAL_EQ.fullmatch(clause) or _ASSIGNED_TO.fullmatch(clause)
        if re.fullmatch(r"atScope\(\)", clause, re.I):
            at_scope = True
        elif named:
            principal = named["id"].lower()
        else:
            raise ArmError(400, "UnsupportedQuery", f"The filter '{raw}' is not supported.")
    return at_scope, principal


def _ra_list(ctx: Context, request: Request, scope: str) -> Response:
    arm.check_scope(scope)
    inventory.check_group_exists(ctx, scope)
    remove_expired(ctx)
    at_scope, principal = _parse_filter(request.param("$filter"))
    with ctx.store.lock:
        selected = []
        for record in ctx.store.data["role_assignments"].values():
            at = record["scope"].lower() == scope.lower()
            above = _under(scope, record["scope"])
            below = _under(record["scope"], scope)
            if principal is not None and record["principal_id"] != principal:
                continue
            if at or above or (below and not at_scope):
                selected.append(record)
        items = [
            _ra_render(r) for r in sorted(selected, key=lambda r: (r["created_at"], r["name"]))
        ]
    return json_response(
        200, page(request, items, page_size=ctx.knobs["page_size"], skip_param="$skipToken")
    )


properties_of = _ra_properties
check_principal = _check_principal
