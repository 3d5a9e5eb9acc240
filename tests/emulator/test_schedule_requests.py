"""Role assignment schedule requests (time-bound active assignments, AZURE-FACTS §9) on the
emulator's wire: create and get, the assignment listed with the others and gone once the
emulator's clock passes its end, the policy cap and a policy refusing every request."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.emulator.conftest import RG, IdentityFactory, RawArm
from tests.support.emulator import AzureClients, Emulator

API = "2020-10-01"
RA_API = "2022-04-01"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


@pytest.fixture
def principal(make_identity: IdentityFactory) -> str:
    return str(make_identity("id-timebound").principal_id)


def vault(clients: AzureClients) -> str:
    return (
        f"/subscriptions/{clients.subscription_id}/resourceGroups/{RG}"
        "/providers/Microsoft.KeyVault/vaults/kv-app"
    )


def body(clients: AzureClients, principal: str, end: datetime | None) -> dict[str, Any]:
    expiration: dict[str, Any] = (
        {"type": "AfterDateTime", "endDateTime": end.isoformat()}
        if end is not None
        else {"type": "NoExpiration"}
    )
    return {
        "properties": {
            "principalId": principal,
            "principalType": "ServicePrincipal",
            "roleDefinitionId": f"/subscriptions/{clients.subscription_id}/providers/"
            f"Microsoft.Authorization/roleDefinitions/{SECRETS_USER}",
            "requestType": "AdminAssign",
            "scheduleInfo": {
                "startDateTime": datetime.now(UTC).isoformat(),
                "expiration": expiration,
            },
        }
    }


def request_path(clients: AzureClients, name: str) -> str:
    return (
        f"{vault(clients)}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{name}"
    )


def listed(raw_arm: RawArm, clients: AzureClients, principal: str) -> list[dict[str, Any]]:
    response = raw_arm(
        "GET",
        f"{vault(clients)}/providers/Microsoft.Authorization/roleAssignments",
        api_version=RA_API,
        params={"$filter": f"principalId eq '{principal}'"},
    )
    assert response.status_code == 200, response.text
    return list(response.json()["value"])


def test_a_time_bound_assignment_is_listed_until_the_clock_passes_its_end(
    emulator: Emulator, raw_arm: RawArm, azure_clients: AzureClients, principal: str
) -> None:
    name = str(uuid.uuid4())
    end = datetime.now(UTC) + timedelta(days=2)
    created = raw_arm(
        "PUT",
        request_path(azure_clients, name),
        json=body(azure_clients, principal, end),
        api_version=API,
    )
    assert created.status_code == 201, created.text
    properties = created.json()["properties"]
    assert properties["requestType"] == "AdminAssign"
    assert properties["scheduleInfo"]["expiration"]["type"] == "AfterDateTime"
    fetched = raw_arm("GET", request_path(azure_clients, name), api_version=API)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == created.json()["id"]
    [assignment] = listed(raw_arm, azure_clients, principal)
    assert assignment["properties"]["scope"] == vault(azure_clients)

    emulator.config(clock_offset_seconds=86400)  # a day later: still there
    assert len(listed(raw_arm, azure_clients, principal)) == 1
    emulator.config(clock_offset_seconds=3 * 86400)  # past its end: Azure removed it
    assert listed(raw_arm, azure_clients, principal) == []
    # The request record stays readable after its assignment ended.
    assert raw_arm("GET", request_path(azure_clients, name), api_version=API).status_code == 200


def test_the_policy_cap_and_a_refusing_policy_fail_the_expiration_rule(
    emulator: Emulator, raw_arm: RawArm, azure_clients: AzureClients, principal: str
) -> None:
    emulator.config(schedule_max_duration_days=30)
    too_long = body(azure_clients, principal, datetime.now(UTC) + timedelta(days=31))
    refused = raw_arm(
        "PUT", request_path(azure_clients, str(uuid.uuid4())), json=too_long, api_version=API
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "RoleAssignmentRequestPolicyValidationFailed"
    assert error["message"] == 'The following policy rules failed: ["ExpirationRule"]'
    no_end = body(azure_clients, principal, None)
    assert (
        raw_arm(
            "PUT", request_path(azure_clients, str(uuid.uuid4())), json=no_end, api_version=API
        ).status_code
        == 400
    )
    within = body(azure_clients, principal, datetime.now(UTC) + timedelta(days=29))
    assert (
        raw_arm(
            "PUT", request_path(azure_clients, str(uuid.uuid4())), json=within, api_version=API
        ).status_code
        == 201
    )

    emulator.config(schedule_max_duration_days=None, schedule_request_refused=True)
    other = raw_arm(
        "PUT",
        request_path(azure_clients, str(uuid.uuid4())),
        json=body(azure_clients, principal, datetime.now(UTC) + timedelta(days=1)),
        api_version=API,
    )
    assert other.status_code == 400
    assert other.json()["error"]["code"] == "RoleAssignmentRequestPolicyValidationFailed"


def test_an_unknown_request_is_not_found(raw_arm: RawArm, azure_clients: AzureClients) -> None:
    response = raw_arm("GET", request_path(azure_clients, str(uuid.uuid4())), api_version=API)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "RoleAssignmentScheduleRequestNotFound"


def test_the_policy_assignments_carry_the_expiration_maximum(
    emulator: Emulator, raw_arm: RawArm, azure_clients: AzureClients
) -> None:
    path = (
        f"{vault(azure_clients)}/providers/Microsoft.Authorization/roleManagementPolicyAssignments"
    )
    assert raw_arm("GET", path, api_version=API).json()["value"] == []  # no policy modelled
    emulator.config(schedule_max_duration_days=30)
    # Read through the SDK the gateway uses (default profile: 2020-10-01).
    found = {
        a.role_definition_id.rsplit("/", 1)[-1]: a
        for a in azure_clients.authorization.role_management_policy_assignments.list_for_scope(
            vault(azure_clients)
        )
    }
    [rule] = found[SECRETS_USER].effective_rules
    assert (rule.id, rule.maximum_duration) == ("Expiration_Admin_Assignment", "P30D")


def put_request(
    raw_arm: RawArm,
    clients: AzureClients,
    principal: str,
    end: datetime | None,
    request_type: str = "AdminAssign",
) -> Any:
    payload = body(clients, principal, end)
    payload["properties"]["requestType"] = request_type
    return raw_arm("PUT", request_path(clients, str(uuid.uuid4())), json=payload, api_version=API)


def test_admin_extend_moves_the_end_of_the_live_time_bound_assignment(
    emulator: Emulator, raw_arm: RawArm, azure_clients: AzureClients, principal: str
) -> None:
    now = datetime.now(UTC)
    assert (
        put_request(raw_arm, azure_clients, principal, now + timedelta(days=2)).status_code == 201
    )
    [before] = listed(raw_arm, azure_clients, principal)

    extended = put_request(
        raw_arm, azure_clients, principal, now + timedelta(days=5), "AdminExtend"
    )

    assert extended.status_code == 201, extended.text
    properties = extended.json()["properties"]
    assert properties["requestType"] == "AdminExtend"
    assert properties["targetRoleAssignmentScheduleId"].endswith(before["name"])
    emulator.config(clock_offset_seconds=3 * 86400)  # past the old end: still there
    [after] = listed(raw_arm, azure_clients, principal)
    assert after["name"] == before["name"]
    emulator.config(clock_offset_seconds=6 * 86400)  # past the new end: Azure removed it
    assert listed(raw_arm, azure_clients, principal) == []


def test_admin_extend_with_nothing_time_bound_to_extend_is_refused(
    emulator: Emulator, raw_arm: RawArm, azure_clients: AzureClients, principal: str
) -> None:
    end = datetime.now(UTC) + timedelta(days=5)
    nothing = put_request(raw_arm, azure_clients, principal, end, "AdminExtend")
    assert nothing.status_code == 400
    assert nothing.json()["error"]["code"] == "RoleAssignmentDoesNotExist"

    # A plain (permanent) assignment has no schedule to extend either.
    assert put_request(raw_arm, azure_clients, principal, None).status_code == 201
    plain = put_request(raw_arm, azure_clients, principal, end, "AdminExtend")
    assert plain.status_code == 400
    assert plain.json()["error"]["code"] == "RoleAssignmentDoesNotExist"


def test_admin_extend_is_judged_by_the_policy_cap_like_an_assignment(
    emulator: Emulator, raw_arm: RawArm, azure_clients: AzureClients, principal: str
) -> None:
    now = datetime.now(UTC)
    assert (
        put_request(raw_arm, azure_clients, principal, now + timedelta(days=2)).status_code == 201
    )
    emulator.config(schedule_max_duration_days=30)
    too_long = put_request(
        raw_arm, azure_clients, principal, now + timedelta(days=31), "AdminExtend"
    )
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "RoleAssignmentRequestPolicyValidationFailed"


def test_admin_renew_brings_back_an_ended_assignment_under_its_name_within_30_days(
    emulator: Emulator, raw_arm: RawArm, azure_clients: AzureClients, principal: str
) -> None:
    now = datetime.now(UTC)
    assert (
        put_request(raw_arm, azure_clients, principal, now + timedelta(days=1)).status_code == 201
    )
    [before] = listed(raw_arm, azure_clients, principal)
    live = put_request(raw_arm, azure_clients, principal, now + timedelta(days=9), "AdminRenew")
    assert live.status_code == 409  # still live: extend it instead
    assert live.json()["error"]["code"] == "RoleAssignmentExists"

    emulator.config(clock_offset_seconds=2 * 86400)  # ended a day ago
    assert listed(raw_arm, azure_clients, principal) == []
    renewed = put_request(raw_arm, azure_clients, principal, now + timedelta(days=9), "AdminRenew")

    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["properties"]["requestType"] == "AdminRenew"
    [after] = listed(raw_arm, azure_clients, principal)
    assert after["name"] == before["name"]
    emulator.config(clock_offset_seconds=10 * 86400)
    assert listed(raw_arm, azure_clients, principal) == []
    emulator.config(clock_offset_seconds=41 * 86400)  # ended 32 days ago: not renewable
    late = put_request(raw_arm, azure_clients, principal, now + timedelta(days=60), "AdminRenew")
    assert late.status_code == 400
    assert late.json()["error"]["code"] == "RoleAssignmentDoesNotExist"
