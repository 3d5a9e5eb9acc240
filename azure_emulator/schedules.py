"""Microsoft.Authorization role assignment schedule requests (api-version 2020-10-01): the
time-bound *active* role assignments of PIM for Azure resources (AZURE-FACTS §9).

Sources: azure-rest-api-specs `specification/authorization/resource-manager/
Microsoft.Authorization/stable/2020-10-01/RoleAssignmentScheduleRequest.json` (Create is a PUT
of `{scope}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{name}` answering
201, Get answers 200; `properties.requestType`, `scheduleInfo.startDateTime`,
`scheduleInfo.expiration` {`type`: AfterDuration | AfterDateTime | NoExpiration, `endDateTime`,
`duration`}), the Learn page "Role Assignment Schedule Requests - Create", and the error body
quoted in hashicorp/terraform-provider-azurerm#22766 and MicrosoftDocs/azure-docs#80426
(`RoleAssignmentRequestPolicyValidationFailed`, "The following policy rules failed:
[\\"ExpirationRule\\"]").

Modelled: `AdminAssign` with `AfterDateTime` or `NoExpiration` makes an active role assignment,
listed with the others, that the emulator removes once its clock (`clock_offset_seconds` knob:
the test's way to let time pass) is past the end; a role management policy's
`Expiration_Admin_Assignment` maximum (`schedule_max_duration_days` knob: a longer request fails
the ExpirationRule) and an Azure Policy or role policy refusing every request
(`schedule_request_refused` knob).

`AdminExtend` and `AdminRenew` (both in the spec's `RequestType` enum, and in
azure-mgmt-authorization 4.0.0's `v2020_10_01.models.RequestType`): the Learn pages "Extend or
renew Azure resource role assignments in Privileged Identity Management" and the Graph
`governanceRoleAssignmentRequest` create page say an administrator *extends* an assignment that
is about to expire and *renews* one that has expired (expired assignments stay visible, and
renewable, for up to 30 days). Modelled so: an AdminExtend moves the end of the live time-bound
assignment of that principal, role and scope to the requested end (same policy cap and refusal as
AdminAssign); with no live time-bound one there is nothing to extend: 400
`RoleAssignmentDoesNotExist` (a code AZURE-FACTS §9 lists; the exact answer of a real tenant to
this case is not verified). An AdminRenew recreates an assignment that a schedule made and that
ended at most 30 days ago, under its old name, until the new end; while it is still live it is
409 `RoleAssignmentExists` (extend it instead), with no such ended assignment 400
`RoleAssignmentDoesNotExist`.

Not modelled: eligibility, approvals, AfterDuration, AdminRemove/AdminUpdate, the validate and
cancel actions (answered 400).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from azure_emulator import armcommon as arm
from azure_emulator import inventory, rbac
from azure_emulator.context import Context
from azure_emulator.protocol import ArmError, Request, Response, Route, json_response

RASR_TYPE = "Microsoft.Authorization/roleAssignmentScheduleRequests"
_RASR_ONE = re.compile(
    r"^(?P<scope>.*)/providers/microsoft\.authorization/roleassignmentschedulerequests/"
    r"(?P<name>[^/]+)/?$",
    re.I,
)
POLICY_FAILED = "RoleAssignmentRequestPolicyValidationFailed"
EXPIRATION_RULE_FAILED = 'The following policy rules failed: ["ExpirationRule"]'
RMPA_TYPE = "Microsoft.Authorization/roleManagementPolicyAssignments"
_RMPA_LIST = re.compile(
    r"^(?P<scope>.*)/providers/microsoft\.authorization/rolemanagementpolicyassignments/?$", re.I
)


def route(ctx: Context, request: Request) -> Route | None:
    method, path = request.method, request.path
    if (listing := _RMPA_LIST.match(path)) and method == "GET":
        scope = arm.normalise_scope(listing["scope"])
        return Route(
            "rmpa.list",
            "arm",
            lambda: _policy_assignments(ctx, request, scope),
            faulty=True,
            subscription=arm.subscription_of(scope),
        )
    m = _RASR_ONE.match(path)
    if m is None:
        return None
    scope, name = arm.normalise_scope(m["scope"]), m["name"]
    handlers = {"PUT": _put, "GET": _get}
    if method not in handlers:
        return Route(
            "arm.method_not_allowed", "arm", lambda: arm.method_not_allowed(method), faulty=True
        )
    handler = handlers[method]
    return Route(
        f"rasr.{method.lower()}",
        "arm",
        lambda: handler(ctx, request, scope, name),
        faulty=True,
        subscription=arm.subscription_of(scope),
    )


def _parse_time(value: Any, field: str) -> float:
    if not isinstance(value, str):
        raise rbac.invalid(f"'{field}' must be a date-time.")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise rbac.invalid(f"'{field}' is not a date-time: {value!r}.") from None


# The request types served (see the module docstring); any other is answered 400.
ASSIGN, EXTEND, RENEW = "AdminAssign", "AdminExtend", "AdminRenew"
# How long an ended assignment stays renewable (Learn: "remain visible in an expired state for
# up to 30 days").
RENEWABLE_SECONDS = 30 * 86400
NOTHING_TO_EXTEND = "RoleAssignmentDoesNotExist"


def _schedule(ctx: Context, properties: dict[str, Any]) -> tuple[str, float, float | None]:
    """(request type, start, end or None) of a request, judged by the emulated policy."""
    request_type = properties.get("requestType")
    if request_type not in (ASSIGN, EXTEND, RENEW):
        raise rbac.invalid(
            f"requestType {request_type!r} is not modelled (AdminAssign, AdminExtend, AdminRenew)."
        )
    info = properties.get("scheduleInfo") or {}
    start = (
        _parse_time(info["startDateTime"], "scheduleInfo.startDateTime")
        if info.get("startDateTime")
        else rbac.emulator_now(ctx)
    )
    expiration = info.get("expiration") or {}
    kind = expiration.get("type") or "NoExpiration"
    if kind == "AfterDateTime":
        end: float | None = _parse_time(
            expiration.get("endDateTime"), "scheduleInfo.expiration.endDateTime"
        )
    elif kind == "NoExpiration":
        end = None
    else:
        raise rbac.invalid(f"expiration type {kind!r} is not modelled.")
    if ctx.knobs["schedule_request_refused"]:
        raise ArmError(400, POLICY_FAILED, EXPIRATION_RULE_FAILED)
    cap_days = ctx.knobs["schedule_max_duration_days"]
    if cap_days is not None and (end is None or end - start > cap_days * 86400):
        # The role management policy's Expiration_Admin_Assignment rule: an end is required and
        # at most maximumDuration after the start (azurerm#22766 quotes this failure).
        raise ArmError(400, POLICY_FAILED, EXPIRATION_RULE_FAILED)
    return str(request_type), start, end


def _policy_assignments(ctx: Context, request: Request, scope: str) -> Response:
    """Role management policy assignments at `scope` (RoleManagementPolicyAssignments
    ListForScope, 2020-10-01; the fields are those of azure-mgmt-authorization 4.0.0's
    v2020_10_01 RoleManagementPolicyAssignment and RoleManagementPolicyExpirationRule): one per
    built-in role, its effective `Expiration_Admin_Assignment` rule carrying the
    `schedule_max_duration_days` cap. With no cap set the list is empty (the emulator models no
    default policy)."""
    arm.check_scope(scope)
    cap_days = ctx.knobs["schedule_max_duration_days"]
    items: list[dict[str, Any]] = []
    if cap_days is not None:
        prefix = "" if scope == "/" else scope
        for guid in sorted(rbac.BY_GUID):
            policy = f"{prefix}/providers/Microsoft.Authorization/roleManagementPolicies/{guid}"
            items.append(
                {
                    "id": f"{prefix}/providers/{RMPA_TYPE}/{guid}",
                    "name": guid,
                    "type": RMPA_TYPE,
                    "properties": {
                        "scope": scope,
                        "roleDefinitionId": f"{prefix}/providers/Microsoft.Authorization/"
                        f"roleDefinitions/{guid}",
                        "policyId": policy,
                        "effectiveRules": [
                            {
                                "id": "Expiration_Admin_Assignment",
                                "ruleType": "RoleManagementPolicyExpirationRule",
                                "isExpirationRequired": True,
                                "maximumDuration": f"P{cap_days}D",
                                "target": {
                                    "caller": "Admin",
                                    "operations": ["All"],
                                    "level": "Assignment",
                                },
                            }
                        ],
                    },
                }
            )
    return json_response(200, {"value": items})


def _render(record: dict[str, Any]) -> dict[str, Any]:
    scope = record["scope"]
    prefix = "" if scope == "/" else scope
    end = record["end"]
    return {
        "id": f"{prefix}/providers/{RASR_TYPE}/{record['name']}",
        "name": record["name"],
        "type": RASR_TYPE,
        "properties": {
            "scope": scope,
            "roleDefinitionId": record["role_definition_id"],
            "principalId": record["principal_id"],
            "principalType": record["principal_type"],
            "requestType": record.get("request_type", ASSIGN),
            "status": record.get("status", "Provisioned"),
            "targetRoleAssignmentScheduleId": f"{prefix}/providers/Microsoft.Authorization/"
            f"roleAssignmentSchedules/{record['assignment']}",
            "scheduleInfo": {
                "startDateTime": arm.iso(record["start"]),
                "expiration": {
                    "type": "AfterDateTime" if end is not None else "NoExpiration",
                    "endDateTime": arm.iso(end) if end is not None else None,
                    "duration": None,
                },
            },
            "createdOn": arm.iso(record["created_at"]),
        },
    }


def _put(ctx: Context, request: Request, scope: str, name: str) -> Response:
    arm.check_scope(scope)
    inventory.check_scope_exists(ctx, scope)
    if not arm.is_guid(name):
        raise rbac.invalid(f"the request name '{name}' must be a GUID.")
    properties = arm.json_object(request).get("properties") or {}
    wanted = rbac.properties_of(request)
    request_type, start, end = _schedule(ctx, properties)
    rbac.remove_expired(ctx)  # an assignment past its end is gone before it is judged
    with ctx.store.mutation() as data:
        requests: dict[str, Any] = data["schedule_requests"]
        if name.lower() in requests:
            # A request name is used once: Azure keeps the record and refuses a second create.
            # No Microsoft page names the answer; the message is quoted from a real one in
            # Azure/azure-quickstart-templates#12838, the code and status as
            # demoray/azure-pim-cli handles them (400 RoleAssignmentRequestExists).
            raise ArmError(
                400,
                "RoleAssignmentRequestExists",
                f"A role assignment request with Id: {name} already exists.",
            )
        try:
            rbac.check_principal(ctx, wanted)
        except ArmError as error:
            if error.code != "PrincipalNotFound":
                raise
            # A schedule request's principal not replicated yet (its principalType is read-only,
            # so nothing skips the lookup): kayasax/EasyPIM#22 quotes 400 {"code":
            # "SubjectNotFound","message":"The subject is not found."}, gone after seconds.
            raise ArmError(400, "SubjectNotFound", "The subject is not found.") from None
        assignments: dict[str, dict[str, Any]] = data["role_assignments"]
        existing = next(
            (other for other in assignments.values() if _same_grant(other, scope, wanted)),
            None,
        )
        now, who = time.time(), arm.caller(request.caller)["id"]
        wanted.pop("explicit_type")
        if request_type == EXTEND:
            if existing is None or existing.get("expires_at") is None:
                raise ArmError(
                    400,
                    NOTHING_TO_EXTEND,
                    "The Role assignment does not exist: there is no active time-bound "
                    "assignment of this principal and role at this scope to extend.",
                )
            existing.update(expires_at=end, updated_at=now, updated_by=who)
            assignment_name = existing["name"]
            ctx.store.touch("role_assignments", assignment_name)  # found by iteration
        elif existing is not None:
            raise ArmError(409, "RoleAssignmentExists", "The Role assignment already exists.")
        elif request_type == RENEW:
            ended = _renewable(requests, scope, wanted, rbac.emulator_now(ctx))
            if ended is None:
                raise ArmError(
                    400,
                    NOTHING_TO_EXTEND,
                    "The Role assignment does not exist: no time-bound assignment of this "
                    "principal and role at this scope ended within the last 30 days.",
                )
            assignment_name = ended["assignment"]  # renewed under its old name
        else:
            assignment_name = name.lower()  # the schedule's assignment, named after its request
        # Fault injection, not a model of PIM's workflow: a request answered with another status
        # of the spec's Status enum (Microsoft.Authorization 2020-10-01, Status: Accepted,
        # PendingProvisioning, Denied, PendingApproval, ...) and no assignment made yet.
        answered = ctx.knobs["schedule_request_answer_status"] if request_type == ASSIGN else None
        if request_type != EXTEND and answered is None:
            assignments[assignment_name] = {
                "name": assignment_name,
                "scope": scope,
                **wanted,
                "created_at": now,
                "created_by": who,
                "updated_at": now,
                "updated_by": who,
                "expires_at": end,
            }
        record = {
            "name": name.lower(),
            "request_type": request_type,
            "scope": scope,
            "assignment": assignment_name,
            "role_definition_id": wanted["role_definition_id"],
            "role_guid": wanted["role_guid"],
            "principal_id": wanted["principal_id"],
            "principal_type": wanted["principal_type"],
            "start": start,
            "end": end,
            "created_at": now,
            **({"status": answered} if answered is not None else {}),
        }
        requests[name.lower()] = record
        return json_response(201, _render(record))


def _same_grant(record: dict[str, Any], scope: str, wanted: dict[str, Any]) -> bool:
    return bool(
        record["scope"].lower() == scope.lower()
        and record["principal_id"] == wanted["principal_id"]
        and record.get("role_guid", "") == wanted["role_guid"]
    )


def _renewable(
    requests: dict[str, Any], scope: str, wanted: dict[str, Any], now: float
) -> dict[str, Any] | None:
    """The latest schedule of this grant that has ended, at most RENEWABLE_SECONDS ago."""
    ended = [
        record
        for record in requests.values()
        if _same_grant(record, scope, wanted)
        and record["end"] is not None
        and record["end"] <= now < record["end"] + RENEWABLE_SECONDS
    ]
    return max(ended, key=lambda record: record["end"], default=None)


def _get(ctx: Context, request: Request, scope: str, name: str) -> Response:
    arm.check_scope(scope)
    with ctx.store.lock:
        record = ctx.store.data["schedule_requests"].get(name.lower())
        if record is None or record["scope"].lower() != scope.lower():
            raise ArmError(
                404,
                "RoleAssignmentScheduleRequestNotFound",
                f"The role assignment schedule request '{name}' is not found.",
            )
        return json_response(200, _render(record))
