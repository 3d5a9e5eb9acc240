"""Pieces every ARM resource provider in the emulator shares: ids, errors, bodies, systemData."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from azure_emulator.protocol import ArmError, Request

_SUBSCRIPTION = re.compile(r"^/subscriptions/(?P<sub>[^/]+)", re.I)
NOT_FOUND_HINT = "For more details please go to https://aka.ms/ARMResourceNotFoundFix"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def is_guid(value: str) -> bool:
    return bool(_GUID.match(value))


def check_subscription(subscription_id: str) -> None:
    """Real ARM refuses a subscription id that is not a GUID before looking at anything else."""
    if not is_guid(subscription_id):
        raise ArmError(
            400,
            "InvalidSubscriptionId",
            f"The provided subscription identifier '{subscription_id}' is malformed or invalid.",
        )


def require_api_version(request: Request) -> None:
    if not request.param("api-version"):
        raise ArmError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )


def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or 400 ``InvalidRequestContent`` as ARM answers."""

    def invalid(reason: str) -> ArmError:
        return ArmError(
            400,
            "InvalidRequestContent",
            f"The request content was invalid and could not be deserialized: '{reason}'.",
        )

    body = request.json(invalid)
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    return body


def resource_not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not "
        f"found. {NOT_FOUND_HINT}",
    )


def iso(epoch: float) -> str:
    """ISO-8601 UTC with a Z, as ARM writes timestamps."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def caller(claims: dict[str, Any]) -> dict[str, str]:
    """Who made a write, for systemData and role assignments' createdBy."""
    return {"id": str(claims.get("oid") or claims.get("appid") or ""), "type": "Application"}


def system_data(record: dict[str, Any]) -> dict[str, str]:
    return {
        "createdBy": record["created_by"],
        "createdByType": "Application",
        "createdAt": iso(record["created_at"]),
        "lastModifiedBy": record["updated_by"],
        "lastModifiedByType": "Application",
        "lastModifiedAt": iso(record["updated_at"]),
    }


def new_guid() -> str:
    return str(uuid.uuid4())


def normalise_location(location: str) -> str:
    """ARM stores 'East US' as 'eastus'."""
    return location.replace(" ", "").lower()


def normalise_scope(raw: str) -> str:
    """A scope without a trailing slash; the tenant root is ``/``."""
    return raw.rstrip("/") or "/"


def subscription_of(scope: str) -> str | None:
    m = _SUBSCRIPTION.match(scope)
    return m["sub"] if m else None


def check_scope(scope: str) -> None:
    """A scope inside a subscription needs a GUID subscription id, as everywhere in ARM."""
    sub = subscription_of(scope)
    if sub is not None:
        check_subscription(sub)


def method_not_allowed(method: str) -> Any:
    raise ArmError(405, "MethodNotAllowed", f"The requested method '{method}' is not allowed.")
