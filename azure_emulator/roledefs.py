"""Microsoft.Authorization (2022-04-01) role definitions: the built-in roles of roles.py.

List at any scope (``$filter`` on ``roleName`` and ``type``), get by scope + GUID, and get by id
in both the tenant form ``/providers/...`` and the subscription form ``/subscriptions/{sub}/...``
(AZURE-FACTS §1.4). Ids come back in the subscription form when asked inside a subscription.
"""

from __future__ import annotations

import re
from typing import Any

from azure_emulator import armcommon as arm
from azure_emulator.context import Context
from azure_emulator.protocol import ArmError, Request, Response, Route, json_response, page
from azure_emulator.roles import BUILT_IN_ROLES, BY_GUID, RoleDefinition

RD_TYPE = "Microsoft.Authorization/roleDefinitions"
# The date the real built-in roles report; any fixed past date would do.
_BUILT_IN_CREATED = "2015-02-02T21:55:09.8806423Z"
_RD_ONE = re.compile(
    r"^(?P<scope>.*)/providers/microsoft\.authorization/roledefinitions/(?P<guid>[^/]+)/?$", re.I
)
_RD_LIST = re.compile(r"^(?P<scope>.*)/providers/microsoft\.authorization/roledefinitions/?$", re.I)


def route(ctx: Context, request: Request) -> Route | None:
    """Match role definition paths at any scope; only GET is served."""
    method = request.method
    if m := _RD_ONE.match(request.path):
        scope, guid = arm.normalise_scope(m["scope"]), m["guid"]
        if method == "GET":
            return _route("rd.get", scope, lambda: _rd_get(request, scope, guid))
    elif m := _RD_LIST.match(request.path):
        scope = arm.normalise_scope(m["scope"])
        if method == "GET":
            return _route("rd.list", scope, lambda: _rd_list(ctx, request, scope))
    else:
        return None
    return _route("arm.method_not_allowed", "/", lambda: arm.method_not_allowed(method))


def _route(op: str, scope: str, handler: Any) -> Route:
    return Route(op, "arm", handler, faulty=True, subscription=arm.subscription_of(scope))


def _rd_render(role: RoleDefinition, scope: str) -> dict[str, Any]:
    sub = arm.subscription_of(scope)
    prefix = f"/subscriptions/{sub}" if sub else ""
    return {
        "id": f"{prefix}/providers/{RD_TYPE}/{role.guid}",
        "name": role.guid,
        "type": RD_TYPE,
        "properties": {
            "roleName": role.name,
            "type": "BuiltInRole",
            "description": role.description,
            "assignableScopes": ["/"],
            "permissions": [
                {
                    "actions": list(role.actions),
                    "notActions": list(role.not_actions),
                    "dataActions": list(role.data_actions),
                    "notDataActions": [],
                }
            ],
            "createdOn": _BUILT_IN_CREATED,
            "updatedOn": _BUILT_IN_CREATED,
            "createdBy": None,
            "updatedBy": None,
        },
    }


def _rd_get(request: Request, scope: str, guid: str) -> Response:
    arm.check_scope(scope)
    role = BY_GUID.get(guid.lower())
    if role is None:
        raise ArmError(
            404, "RoleDefinitionDoesNotExist", f"The role definition '{guid}' could not be found."
        )
    return json_response(200, _rd_render(role, scope))


def _rd_list(ctx: Context, request: Request, scope: str) -> Response:
    arm.check_scope(scope)
    raw = request.param("$filter")
    name, role_type = None, None
    if raw:
        for clause in re.split(r"\s+and\s+", raw.strip(), flags=re.I):
            if m := re.fullmatch(r"roleName\s+eq\s+'(?P<v>.*)'", clause, re.I):
                name = m["v"].replace("''", "'")
            elif m := re.fullmatch(r"type\s+eq\s+'(?P<v>.*)'", clause, re.I):
                role_type = m["v"]
            else:
                raise ArmError(400, "UnsupportedQuery", f"The filter '{raw}' is not supported.")
    roles = [
        role
        for role in BUILT_IN_ROLES
        if (name is None or role.name.lower() == name.lower())
        and (role_type is None or role_type.lower() == "builtinrole")
    ]
    items = [_rd_render(role, scope) for role in roles]
    return json_response(
        200, page(request, items, page_size=ctx.knobs["page_size"], skip_param="$skipToken")
    )
