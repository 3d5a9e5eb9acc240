"""The Azure gateway: the only code that talks to ARM, through azure-identity and azure-mgmt-*.

Every method is one ARM call (or one paged read), returns plain dataclasses and turns SDK errors
into TransientError / PermanentError carrying the Azure code and x-ms-request-id. In emulator
mode the same SDK clients talk HTTPS to the emulator; nothing here knows the difference except
which base URL, CA bundle and credential are used.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import (
    ClientSecretCredential,
    CredentialUnavailableError,
    DefaultAzureCredential,
)
from azure.mgmt.authorization import AuthorizationManagementClient

# The version-specific module: the package's `models` star-imports several API versions.
from azure.mgmt.authorization.v2020_10_01.models import (
    RoleAssignmentScheduleRequest,
    RoleAssignmentScheduleRequestPropertiesScheduleInfo,
    RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration,
)
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity, IdentityUpdate
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions
from django.conf import settings
from requests import Session
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies
from urllib3.util.retry import Retry

from identities.scopes import ScopeError, parse_scope
from identities.validators import canonical_arm_id
from provisioning.concurrency import MAX_PARALLEL_WRITES
from provisioning.errors import GatewayError, PermanentError, TransientError
from provisioning.metrics import azure_client_hooks
from provisioning.ratelimit import observe_response

T = TypeVar("T")

_TOKEN_HTTP_ERROR = re.compile(r"HTTP Error: (429|5\d\d)\b")
# How long MSAL answers a token request from its cache of Entra's last 429/5xx when Entra sent no
# Retry-After (msal.application: default_throttle_time for a confidential client).
MSAL_ERROR_REPLAY_SECONDS = 5.0

# Throttling, by every name Azure gives it: ARM's own 429 (SubscriptionRequestsThrottled), the
# resource providers' (TooManyRequests; Compute's TooManyRequestsReceived), AZURE-FACTS §2.3, §8.
# Whatever the status, these are waited out on the time budget like a 429 (provisioning.retry).
THROTTLING_CODES = frozenset(
    {"SubscriptionRequestsThrottled", "TooManyRequestsReceived", "TooManyRequests"}
)
# Codes Azure documents as "try again": replication delay after creating a principal, concurrent
# FIC writes on one identity, throttling variants (AZURE-FACTS §2).
TRANSIENT_CODES = THROTTLING_CODES | frozenset(
    {
        "PrincipalNotFound",
        # The schedule request's form of it: its body cannot carry principalType (read-only in
        # 2020-10-01), so a principal made a moment ago is not found until it replicates
        # (AZURE-FACTS §9; kayasax/EasyPIM#22 quotes 400 {"code":"SubjectNotFound","message":
        # "The subject is not found."} for a new principal, gone after seconds).
        "SubjectNotFound",
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
        "RetryableErrorDueToAnotherOperation",
        "InternalServerError",
        "ServiceUnavailable",
        "GatewayTimeout",
    }
)
ROLE_DEFINITION_PATH = "/providers/Microsoft.Authorization/roleDefinitions/"
# A schedule request name used before (a rerun): no Microsoft page names the code. Real answers
# quoted in public: "A role assignment request with Id: … already exists"
# (Azure/azure-quickstart-templates#12838), code RoleAssignmentRequestExists (handled by
# demoray/azure-pim-cli); the emulator's own name for it is kept too.
# A schedule request's `status` (the Status enum of Microsoft.Authorization 2020-10-01): where
# it ended without an assignment, where it waits for a person in PIM (the portal cannot), and
# where the assignment is made; the others are on their way (retried).
SCHEDULE_REFUSED = frozenset(
    {
        "Denied",
        "Failed",
        "FailedAsResourceIsLocked",
        "AdminDenied",
        "TimedOut",
        "Invalid",
        "Revoked",
        "Canceled",
    }
)
SCHEDULE_NEEDS_APPROVAL = frozenset(
    {"PendingApproval", "PendingApprovalProvisioning", "PendingAdminDecision"}
)
SCHEDULE_MADE = frozenset({"Provisioned", "Granted", "ScheduleCreated", "AdminApproved"})
SCHEDULE_REQUEST_EXISTS = frozenset(
    {"RoleAssignmentRequestExists", "RoleAssignmentScheduleRequestExists"}
)
# Renewing a time-bound assignment (RequestType of RoleAssignmentScheduleRequest.json, 2020-10-01;
# azure-mgmt-authorization 4.0.0 v2020_10_01.models.RequestType): extend it while it is live,
# renew it once it ended; Azure's answer when there is nothing time-bound to extend or renew.
EXTEND, RENEW = "AdminExtend", "AdminRenew"
NOTHING_TO_EXTEND = "RoleAssignmentDoesNotExist"
# Names of those requests: derived from the assignment and the end, so a rerun repeats them.
SCHEDULE_REQUEST_NAMESPACE = uuid.UUID("3b0f8c52-6d0e-5f7a-9c41-2e8d7a1b5c90")
# Resource Graph's current stable REST version (azure-rest-api-specs
# specification/resourcegraph/resource-manager/Microsoft.ResourceGraph/stable/2022-10-01); the
# SDK 8.0.1 defaults to 2021-03-01, whose request and response shapes are the same.
RESOURCE_GRAPH_API_VERSION = "2022-10-01"


@dataclass(frozen=True)
class CallResult:
    """What one ARM write answered: HTTP status (201 created / 200 updated...) and request id."""

    status: int
    request_id: str


@dataclass(frozen=True)
class IdentityState:
    resource_id: str
    name: str
    location: str
    client_id: str
    principal_id: str
    tenant_id: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FicState:
    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]


@dataclass(frozen=True)
class RoleAssignmentState:
    id: str
    name: str
    scope: str
    role_definition_guid: str
    principal_id: str
    principal_type: str


@dataclass(frozen=True)
class ResourceGraphPage:
    """One page of a Resource Graph answer (resultFormat objectArray), with what its headers
    said of the caller's query quota (None when they did not say)."""

    rows: list[dict[str, Any]]
    total_records: int
    skip_token: str | None
    quota_remaining: int | None = None
    quota_resets_after: float | None = None  # seconds


@dataclass(frozen=True)
class ClusterState:
    resource_id: str
    location: str
    oidc_issuer_enabled: bool
    issuer_url: str
    workload_identity_enabled: bool


def role_definition_guid(role_definition_id: str) -> str:
    """Role definitions are compared by trailing GUID, case-insensitively (AZURE-FACTS §1.3)."""
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?)?$"
)


def iso_duration(value: str | None) -> timedelta | None:
    """An ISO 8601 duration as role management policies write it (`P90D`, `PT8H`); None when
    absent or in a form not handled (then no clamp is applied: Azure judges the request)."""
    match = _ISO_DURATION.match(value or "")
    if not value or match is None or not any(match.groupdict().values()):
        return None
    return timedelta(
        days=int(match["days"] or 0),
        hours=int(match["hours"] or 0),
        minutes=int(match["minutes"] or 0),
    )


def plain_scope(scope: str) -> str:
    """`scope` itself, once it is known to reach ARM unchanged; PermanentError otherwise.

    The policy refuses such scopes at filing; this is the last check before the SDK puts the
    scope into a URL unescaped, so a row written before that rule (or by a bug) is never sent.
    """
    try:
        parse_scope(scope)
    except ScopeError as error:
        raise PermanentError(
            f"Scope {scope[:200]!r} {error.explanation}; not sent to Azure", code="UnsafeScope"
        ) from None
    return scope


def subscription_of(arm_id: str) -> str:
    parts = arm_id.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1]
    raise PermanentError(f"{arm_id!r} is not inside a subscription", code="InvalidScope")


# Resource Graph's per-user quota headers (Learn, "Guidance for throttled requests in Azure
# Resource Graph": "In every query response, Azure Resource Graph adds two throttling headers":
# x-ms-user-quota-remaining, the queries left, and x-ms-user-quota-resets-after, hh:mm:ss).
_HH_MM_SS = re.compile(r"^(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)$")


def _quota_remaining(headers: Any) -> int | None:
    try:
        return int(str(headers.get("x-ms-user-quota-remaining") or "").strip())
    except ValueError:
        return None


def _quota_resets_after(headers: Any) -> float | None:
    match = _HH_MM_SS.match(str(headers.get("x-ms-user-quota-resets-after") or "").strip())
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _retry_after(response: Any) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time())


def _network_cause(exc: BaseException) -> BaseException | None:
    """The connection or read failure an exception was raised from, if any."""
    seen = exc.__cause__ or exc.__context__
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, ServiceRequestError | ServiceResponseError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def translate(exc: Exception, *, operation: str) -> GatewayError:
    """Turn an SDK exception into the gateway's vocabulary, keeping code and request id."""
    if isinstance(exc, CredentialUnavailableError):
        return PermanentError(f"{operation}: the portal has no usable Azure credential: {exc}")
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        # MSAL reports the token endpoint's own HTTP failures as text ("HTTP Error: 500"): an
        # Entra outage or throttling is worth retrying, a refused credential is not. MSAL also
        # replays that answer, without calling Entra, to every identical token request for the
        # answer's Retry-After (5 s when it has none): a retry inside that window is no call at
        # all, so the error is waited out on the time budget instead of spending attempts.
        if status_match := _TOKEN_HTTP_ERROR.search(str(exc.message)):
            token_status = int(status_match.group(1))
            return TransientError(
                f"{operation}: Entra ID answered the portal's token request with HTTP "
                f"{token_status}",
                code="TokenEndpointUnavailable",
                status=token_status,
                retry_after=MSAL_ERROR_REPLAY_SECONDS,
                wait_out=True,
            )
        cause = _network_cause(exc)
        if cause is not None:
            # azure-identity raises every failure of the token request as
            # ClientAuthenticationError("Authentication failed: …") from the original exception
            # (azure/identity/_internal/decorators.py, wrap_exceptions): Entra not answering in
            # time is a network error like any other, not a refused credential.
            return TransientError(
                f"{operation}: network error asking Entra ID for a token: {cause}",
                code="Network",
            )
        return PermanentError(
            f"{operation}: the portal could not authenticate to Azure: {exc.message}",
            code="AuthenticationFailed",
        )
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        code = (exc.error.code if exc.error else "") or ""
        message = (exc.error.message if exc.error else "") or exc.reason or str(exc.message)
        response = exc.response
        headers: Any = getattr(response, "headers", {}) if response is not None else {}
        request_id = headers.get("x-ms-request-id", "")
        details: dict[str, Any] = {
            "code": code,
            "status": status,
            "request_id": request_id,
            "retry_after": _retry_after(response),
        }
        if code in THROTTLING_CODES:
            return TransientError(f"{operation}: {message}", wait_out=True, **details)
        if status in {408, 429} or (status or 0) >= 500 or code in TRANSIENT_CODES:
            return TransientError(f"{operation}: {message}", **details)
        return PermanentError(f"{operation}: {message}", **details)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"{operation}: network error talking to Azure: {exc}", code="Network")
    raise exc


@contextlib.contextmanager
def _azure(operation: str) -> Iterator[None]:
    try:
        yield
    except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
        raise translate(exc, operation=operation) from exc
    except CredentialUnavailableError as exc:
        raise translate(exc, operation=operation) from exc


def _with_response(pipeline_response: Any, deserialized: Any, _headers: Any) -> tuple[Any, Any]:
    """`cls=` hook: keep the HTTP response next to the model so we can record status/request id."""
    return deserialized, pipeline_response.http_response


def _call_result(http_response: Any) -> CallResult:
    return CallResult(
        status=int(http_response.status_code),
        request_id=http_response.headers.get("x-ms-request-id", ""),
    )


def _schedule_status_refusal(status: str, operation: str) -> None:
    """Raise what a final schedule request status without an assignment means."""
    if status in SCHEDULE_REFUSED:
        raise PermanentError(
            f"{operation}: Azure answered the schedule request {status}",
            code=f"RoleAssignmentSchedule{status}",
        )
    if status in SCHEDULE_NEEDS_APPROVAL:
        raise PermanentError(
            f"{operation}: the scope's role management policy wants an approval in Privileged "
            f"Identity Management ({status}); the portal cannot wait for a person there. Ask "
            "for the policy to allow the assignment without approval, or turn "
            "AZURE_TIME_BOUND_ASSIGNMENTS off",
            code="RoleAssignmentScheduleNeedsApproval",
        )


def _gone(exc: PermanentError) -> CallResult:
    """A DELETE's 404 as done, else `exc` raised: what it would delete is gone with its resource
    group or scope. A provider answers 204 for a resource that does not exist; a 404 comes from
    ARM's proxy layer when the resource group (or the scope's resource) does not exist
    (Azure/azure-resource-manager-rpc v1.0/resource-api-reference.md, Delete Resource: "If the
    resource group does not exist, 404 (NotFound) will be returned by the proxy layer and will
    not reach the resource provider"). Recorded with ARM's status and request id like any
    other answer, so the audit row says what Azure answered."""
    if exc.status != 404:
        raise exc
    return CallResult(status=404, request_id=exc.request_id)


def _identity_state(model: Any) -> IdentityState:
    return IdentityState(
        # ARM answers `/resourcegroups/`; every id leaves the gateway in canonical casing.
        resource_id=canonical_arm_id(model.id),
        name=model.name,
        location=model.location,
        client_id=model.client_id,
        principal_id=model.principal_id,
        tenant_id=model.tenant_id,
        tags=dict(model.tags or {}),
    )


def _fic_state(model: Any) -> FicState:
    return FicState(
        name=model.name,
        issuer=model.issuer,
        subject=model.subject,
        audiences=tuple(model.audiences or ()),
    )


def _role_assignment_state(model: Any) -> RoleAssignmentState:
    return RoleAssignmentState(
        id=canonical_arm_id(model.id),
        name=model.name,
        scope=canonical_arm_id(model.scope or ""),
        role_definition_guid=role_definition_guid(model.role_definition_id),
        principal_id=model.principal_id,
        principal_type=str(model.principal_type or ""),
    )


class AzureGateway:
    """Typed wrappers over the ARM SDK clients, one client per subscription, shared by threads."""

    def __init__(
        self,
        *,
        credential: TokenCredential,
        arm_url: str,
        authority: str,
        arm_scope: str = "https://management.azure.com/.default",
        connection_verify: str | bool = True,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.credential = credential
        self.arm_url = arm_url.rstrip("/")
        # The scope of every ARM token, from the configured cloud (provisioning.clouds): the
        # SDK clients otherwise ask for the public cloud's whatever their base_url.
        self.arm_scope = arm_scope
        # Entra authority for token exchanges made on behalf of workloads (verification).
        self.authority = authority
        self.connection_verify = connection_verify
        self.client_kwargs = client_kwargs or {}
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    # -- clients ----------------------------------------------------------------------------------
    def _client(self, kind: str, subscription_id: str, factory: Callable[..., T]) -> T:
        key = (kind, subscription_id)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = factory(
                    self.credential,
                    subscription_id,
                    base_url=self.arm_url,
                    credential_scopes=[self.arm_scope],
                    connection_verify=self.connection_verify,
                    **self.client_kwargs,
                )
                self._clients[key] = client
            return client

    def msi(self, subscription_id: str) -> ManagedServiceIdentityClient:
        return self._client("msi", subscription_id, ManagedServiceIdentityClient)

    def authorization(self, subscription_id: str) -> AuthorizationManagementClient:
        return self._client("authorization", subscription_id, AuthorizationManagementClient)

    def containers(self, subscription_id: str) -> ContainerServiceClient:
        return self._client("containers", subscription_id, ContainerServiceClient)

    def resource_graph(self) -> ResourceGraphClient:
        """Tenant-level (no subscription); asked while someone waits for a page, so the SDK
        does not retry or sleep on a Retry-After: a failed query is reported at once."""
        with self._lock:
            client = self._clients.get(("resourcegraph", ""))
            if client is None:
                client = ResourceGraphClient(
                    self.credential,
                    base_url=self.arm_url,
                    credential_scopes=[self.arm_scope],
                    connection_verify=self.connection_verify,
                    api_version=RESOURCE_GRAPH_API_VERSION,
                    **{**self.client_kwargs, "retry_total": 0},
                )
                self._clients[("resourcegraph", "")] = client
            return client

    # -- Resource Graph ---------------------------------------------------------------------------
    def query_resources(
        self,
        *,
        query: str,
        subscriptions: list[str],
        skip_token: str | None = None,
        top: int = 1000,
    ) -> ResourceGraphPage:
        """One page of a KQL query over `subscriptions` (POST .../Microsoft.ResourceGraph/
        resources); follow `skip_token` for the next one."""
        request = QueryRequest(
            subscriptions=subscriptions,
            query=query,
            options=QueryRequestOptions(
                skip_token=skip_token, top=top, result_format="objectArray"
            ),
        )
        try:
            with _azure("query Azure Resource Graph"):
                # `cls` makes the SDK's typed result (model, response).
                answered: Any = self.resource_graph().resources(request, cls=_with_response)
        except TransientError as exc:
            if exc.status == 429 and exc.retry_after is None:
                # Resource Graph says when in its quota header, not in Retry-After.
                response = getattr(exc.__cause__, "response", None)
                exc.retry_after = _quota_resets_after(getattr(response, "headers", None) or {})
            raise
        answer, response = answered
        rows: list[Any] = answer.data if isinstance(answer.data, list) else []
        return ResourceGraphPage(
            rows=[row for row in rows if isinstance(row, dict)],
            total_records=int(answer.total_records or 0),
            skip_token=answer.skip_token or None,
            quota_remaining=_quota_remaining(response.headers),
            quota_resets_after=_quota_resets_after(response.headers),
        )

    # -- user-assigned identities -----------------------------------------------------------------
    def ensure_identity(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        name: str,
        location: str,
        tags: dict[str, str],
    ) -> tuple[IdentityState, CallResult]:
        """PUT the identity (create or update location/tags); ids are stable across re-PUTs."""
        with _azure(f"create managed identity {name}"):
            model, response = self.msi(subscription_id).user_assigned_identities.create_or_update(
                resource_group, name, Identity(location=location, tags=tags), cls=_with_response
            )
        return _identity_state(model), _call_result(response)

    def update_identity_tags(
        self, *, subscription_id: str, resource_group: str, name: str, tags: dict[str, str]
    ) -> tuple[IdentityState, CallResult]:
        """PATCH the identity's tags (UserAssignedIdentities_Update, msi 2024-11-30): the given
        tags replace the identity's; nothing else about it changes."""
        with _azure(f"update tags of managed identity {name}"):
            model, response = self.msi(subscription_id).user_assigned_identities.update(
                resource_group, name, IdentityUpdate(tags=tags), cls=_with_response
            )
        return _identity_state(model), _call_result(response)

    def get_identity(
        self, *, subscription_id: str, resource_group: str, name: str
    ) -> IdentityState | None:
        try:
            with _azure(f"read managed identity {name}"):
                model = self.msi(subscription_id).user_assigned_identities.get(resource_group, name)
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        return _identity_state(model)

    def delete_identity(
        self, *, subscription_id: str, resource_group: str, name: str
    ) -> CallResult:
        """DELETE; 204 (already gone) counts as done, and so does a 404 (`_gone`)."""
        try:
            with _azure(f"delete managed identity {name}"):
                _, response = self.msi(subscription_id).user_assigned_identities.delete(
                    resource_group, name, cls=_with_response
                )
        except PermanentError as exc:
            return _gone(exc)
        return _call_result(response)

    # -- federated identity credentials ----------------------------------------------------------
    def ensure_fic(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        identity_name: str,
        name: str,
        issuer: str,
        subject: str,
        audience: str,
    ) -> tuple[FicState, CallResult]:
        with _azure(f"create federated credential {name} on {identity_name}"):
            model, response = self.msi(
                subscription_id
            ).federated_identity_credentials.create_or_update(
                resource_group,
                identity_name,
                name,
                FederatedIdentityCredential(issuer=issuer, subject=subject, audiences=[audience]),
                cls=_with_response,
            )
        return _fic_state(model), _call_result(response)

    def list_fics(
        self, *, subscription_id: str, resource_group: str, identity_name: str
    ) -> list[FicState]:
        with _azure(f"list federated credentials of {identity_name}"):
            return [
                _fic_state(model)
                for model in self.msi(subscription_id).federated_identity_credentials.list(
                    resource_group, identity_name
                )
            ]

    def delete_fic(
        self, *, subscription_id: str, resource_group: str, identity_name: str, name: str
    ) -> CallResult:
        """DELETE; 204 (already gone) counts as done, and so does a 404: the identity, or its
        resource group, is gone with it (`_gone`)."""
        try:
            with _azure(f"delete federated credential {name} on {identity_name}"):
                _, response = self.msi(subscription_id).federated_identity_credentials.delete(
                    resource_group, identity_name, name, cls=_with_response
                )
        except PermanentError as exc:
            return _gone(exc)
        return _call_result(response)

    # -- role assignments -------------------------------------------------------------------------
    def ensure_role_assignment(
        self, *, scope: str, name: str, role_guid: str, principal_id: str
    ) -> tuple[RoleAssignmentState, CallResult | None]:
        """PUT the assignment under its deterministic name.

        `RoleAssignmentExists` (the same principal/role/scope under another name, e.g. made by
        hand) is success: the existing assignment is returned with no CallResult.
        """
        subscription_id = subscription_of(plain_scope(scope))
        role_definition_id = f"/subscriptions/{subscription_id}{ROLE_DEFINITION_PATH}{role_guid}"
        client = self.authorization(subscription_id)
        parameters = RoleAssignmentCreateParameters(
            role_definition_id=role_definition_id,
            principal_id=principal_id,
            principal_type="ServicePrincipal",
        )
        try:
            with _azure(f"assign role {role_guid} on {scope}"):
                model, response = client.role_assignments.create(
                    scope, name, parameters, cls=_with_response
                )
        except PermanentError as exc:
            if exc.code != "RoleAssignmentExists":
                raise
            existing = self._find_assignment(scope, role_guid, principal_id)
            if existing is None:
                raise
            return existing, None
        return _role_assignment_state(model), _call_result(response)

    def ensure_time_bound_role_assignment(
        self,
        *,
        scope: str,
        name: str,
        role_guid: str,
        principal_id: str,
        end: datetime,
    ) -> tuple[RoleAssignmentState, CallResult | None]:
        """An active role assignment Azure itself ends at `end`: a role assignment schedule
        request (AdminAssign, expiration AfterDateTime; api-version 2020-10-01 through the
        client's default profile, AZURE-FACTS §9) named `name`, then the assignment it made.

        A policy refusing it (`RoleAssignmentRequestPolicyValidationFailed`, e.g. the
        ExpirationRule) is a PermanentError with that code: the caller falls back to a plain
        assignment. A rerun after the request was made finds the assignment (no CallResult)."""
        subscription_id = subscription_of(plain_scope(scope))
        role_definition_id = f"/subscriptions/{subscription_id}{ROLE_DEFINITION_PATH}{role_guid}"
        request = RoleAssignmentScheduleRequest(
            role_definition_id=role_definition_id,
            principal_id=principal_id,
            request_type="AdminAssign",
            justification="Workload Identity Portal: time-bound access",
            schedule_info=RoleAssignmentScheduleRequestPropertiesScheduleInfo(
                start_date_time=datetime.now(UTC),
                expiration=RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration(
                    type="AfterDateTime", end_date_time=end
                ),
            ),
        )
        client = self.authorization(subscription_id)
        call: CallResult | None = None
        status = ""
        operation = f"assign role {role_guid} on {scope} until {end.isoformat()}"
        try:
            with _azure(operation):
                model, response = client.role_assignment_schedule_requests.create(
                    scope, name, request, cls=_with_response
                )
            call = _call_result(response)
            status = str(model.status or "")
        except PermanentError as exc:
            if exc.code == "RoleAssignmentExists":
                pass  # held already (a plain or an earlier time-bound assignment)
            elif exc.code in SCHEDULE_REQUEST_EXISTS:
                # A rerun: how far did the request made before get?
                with _azure(f"read schedule request {name} on {scope}"):
                    status = str(client.role_assignment_schedule_requests.get(scope, name).status)
            else:
                raise
        _schedule_status_refusal(status, operation)
        existing = self._find_assignment(scope, role_guid, principal_id)
        if existing is None:
            if status and status not in SCHEDULE_MADE:
                # Accepted, PendingProvisioning, ProvisioningStarted, ...: PIM is still at it.
                raise TransientError(
                    f"{operation}: the schedule request is {status}, no assignment yet",
                    code="RoleAssignmentSchedulePending",
                )
            raise PermanentError(
                f"the schedule request for role {role_guid} on {scope} made no assignment",
                code="RoleAssignmentScheduleMissing",
            )
        return existing, call

    def extend_time_bound_role_assignment(
        self,
        *,
        scope: str,
        name: str,
        role_guid: str,
        principal_id: str,
        end: datetime,
    ) -> tuple[str, CallResult | None]:
        """Move the end of the time-bound assignment `name` to `end` (a renewal): a schedule
        request of type `AdminExtend` while it is live, `AdminRenew` once Azure ended it
        (`RequestType` of the 2020-10-01 spec and azure-mgmt-authorization 4.0.0; Learn: extend
        what is about to expire, renew what has expired). Returns the type that was granted and
        its call (None: a rerun found its request already made).

        The request names are derived from the assignment's name and the end, so a rerun sends
        the same ones. Raises PermanentError `RoleAssignmentDoesNotExist` when Azure has nothing
        time-bound to extend or renew (a plain assignment), and the policy's refusal
        (`RoleAssignmentRequestPolicyValidationFailed`) as it comes."""
        try:
            return EXTEND, self._schedule_change(scope, name, role_guid, principal_id, end, EXTEND)
        except PermanentError as exc:
            if exc.code != NOTHING_TO_EXTEND:
                raise
        # Not live any more (Azure ended it at its end): renew it.
        try:
            return RENEW, self._schedule_change(scope, name, role_guid, principal_id, end, RENEW)
        except PermanentError as exc:
            if exc.code != "RoleAssignmentExists":
                raise
            # Live, yet nothing to extend: a plain (permanent) assignment, made when a policy
            # refused the schedule or before the setting was on.
            raise PermanentError(
                f"role {role_guid} on {scope} is a plain assignment in Azure: nothing "
                "time-bound to extend",
                code=NOTHING_TO_EXTEND,
                status=exc.status,
                request_id=exc.request_id,
            ) from exc

    def _schedule_change(
        self,
        scope: str,
        name: str,
        role_guid: str,
        principal_id: str,
        end: datetime,
        request_type: str,
    ) -> CallResult | None:
        """One AdminExtend/AdminRenew request for assignment `name`; None when a rerun finds it
        already made (a request name is used once)."""
        subscription_id = subscription_of(plain_scope(scope))
        role_definition_id = f"/subscriptions/{subscription_id}{ROLE_DEFINITION_PATH}{role_guid}"
        request_name = uuid.uuid5(
            SCHEDULE_REQUEST_NAMESPACE, f"{name}|{request_type}|{end.isoformat()}"
        )
        request = RoleAssignmentScheduleRequest(
            role_definition_id=role_definition_id,
            principal_id=principal_id,
            request_type=request_type,
            justification="Workload Identity Portal: renewal of time-bound access",
            schedule_info=RoleAssignmentScheduleRequestPropertiesScheduleInfo(
                start_date_time=datetime.now(UTC),
                expiration=RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration(
                    type="AfterDateTime", end_date_time=end
                ),
            ),
        )
        client = self.authorization(subscription_id)
        try:
            with _azure(f"{request_type} role {role_guid} on {scope} until {end.isoformat()}"):
                _, response = client.role_assignment_schedule_requests.create(
                    scope, str(request_name), request, cls=_with_response
                )
        except PermanentError as exc:
            if exc.code in SCHEDULE_REQUEST_EXISTS:
                return None
            raise
        return _call_result(response)

    def time_bound_maximum(self, *, scope: str, role_guid: str) -> timedelta | None:
        """The longest time-bound active assignment of `role_guid` that `scope`'s role
        management policy allows (its effective `Expiration_Admin_Assignment` rule's
        `maximumDuration`, AZURE-FACTS §9); None when no policy there sets one."""
        subscription_id = subscription_of(plain_scope(scope))
        client = self.authorization(subscription_id)
        with _azure(f"read the role management policies of {scope}"):
            assignments = list(client.role_management_policy_assignments.list_for_scope(scope))
        for assignment in assignments:
            if role_definition_guid(assignment.role_definition_id or "") != role_guid.lower():
                continue
            for rule in assignment.effective_rules or []:
                if rule.id == "Expiration_Admin_Assignment":
                    return iso_duration(getattr(rule, "maximum_duration", None))
        return None

    def _find_assignment(
        self, scope: str, role_guid: str, principal_id: str
    ) -> RoleAssignmentState | None:
        for assignment in self.list_role_assignments_for_principal(
            scope=scope, principal_id=principal_id
        ):
            if (
                assignment.role_definition_guid == role_guid.lower()
                and assignment.scope.lower() == scope.lower()
            ):
                return assignment
        return None

    def get_role_assignment(self, *, scope: str, name: str) -> RoleAssignmentState | None:
        try:
            with _azure(f"read role assignment {name}"):
                client = self.authorization(subscription_of(plain_scope(scope)))
                model = client.role_assignments.get(scope, name)
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        return _role_assignment_state(model)

    def list_role_assignments_for_principal(
        self, *, scope: str, principal_id: str
    ) -> list[RoleAssignmentState]:
        """Assignments of the principal at, above or below `scope` (documented filter)."""
        client = self.authorization(subscription_of(plain_scope(scope)))
        with _azure(f"list role assignments of {principal_id}"):
            return [
                _role_assignment_state(model)
                for model in client.role_assignments.list_for_scope(
                    scope, filter=f"principalId eq '{principal_id}'"
                )
            ]

    def delete_role_assignment(self, *, scope: str, name: str) -> CallResult:
        """DELETE; 204 (already gone) counts as done, and so does a 404 (`_gone`)."""
        client = self.authorization(subscription_of(plain_scope(scope)))
        try:
            with _azure(f"delete role assignment {name}"):
                _, response = client.role_assignments.delete(scope, name, cls=_with_response)
        except PermanentError as exc:
            return _gone(exc)
        return _call_result(response)

    # -- AKS ------------------------------------------------------------------------------------
    def get_cluster(self, *, subscription_id: str, resource_group: str, name: str) -> ClusterState:
        with _azure(f"read AKS cluster {name}"):
            model = self.containers(subscription_id).managed_clusters.get(resource_group, name)
        oidc = model.properties.oidc_issuer_profile if model.properties else None
        security = model.properties.security_profile if model.properties else None
        workload = security.workload_identity if security else None
        return ClusterState(
            resource_id=model.id or "",
            location=model.location or "",
            oidc_issuer_enabled=bool(oidc and oidc.enabled),
            issuer_url=(oidc.issuer_url or "") if oidc else "",
            workload_identity_enabled=bool(workload and workload.enabled),
        )

    def cluster_kubeconfig(
        self, *, subscription_id: str, resource_group: str, name: str
    ) -> dict[str, Any]:
        """The cluster-user kubeconfig as a dict (AKS returns it base64-encoded, YAML or JSON)."""
        import yaml

        with _azure(f"read credentials of AKS cluster {name}"):
            result = self.containers(
                subscription_id
            ).managed_clusters.list_cluster_user_credentials(resource_group, name)
        if not result.kubeconfigs:
            raise PermanentError(f"AKS cluster {name} returned no kubeconfig")
        raw: Any = result.kubeconfigs[0].value or b""
        text = raw.decode() if isinstance(raw, bytes) else base64.b64decode(raw).decode()
        loaded = yaml.safe_load(text)
        if not isinstance(loaded, dict):
            raise PermanentError(f"AKS cluster {name} returned an unreadable kubeconfig")
        return loaded


def _emulator_settings() -> tuple[str, str, dict[str, str]]:
    state_dir = Path(settings.EMULATOR_STATE_DIR)
    url = settings.EMULATOR_URL
    if not url:
        url_file = state_dir / "url"
        if not url_file.exists():
            raise PermanentError(
                "AZURE_MODE=emulator but the emulator is not running: start it with "
                "`python3 dev.py run` or set EMULATOR_URL",
                code="EmulatorUnavailable",
            )
        url = url_file.read_text().strip()
    client_file = state_dir / "portal-client.json"
    if not client_file.exists():
        raise PermanentError(
            f"emulator credentials not found at {client_file}", code="EmulatorUnavailable"
        )
    return url, str(state_dir / "ca.pem"), json.loads(client_file.read_text())


class _ArmSession(Session):
    """A requests session that reads the environment's proxy and CA-bundle settings once per
    origin instead of on every call.

    requests (`trust_env`, on by default, and azure-core's documented HTTP_PROXY / HTTPS_PROXY /
    NO_PROXY support rests on it) looks them up for each request: two scans of the whole of
    `os.environ` (`urllib.request.getproxies_environment`, once for NO_PROXY's bypass test and
    once for the proxies) and the REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE lookup. Profiled on the
    emulator, that was about a sixth of an ARM call's own CPU in this process, paid by every
    call, the 21 calls of a k = 20 identity queued behind each other on the GIL.

    Same answers as requests gives, per (scheme, host, the call's no_proxy): the environment is
    read on the first call to an origin, so a variable changed in a running process is not seen
    (a restart is, as for every other setting). The netrc lookup is left as requests does it."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str, str | None], tuple[dict[str, str], str | None]] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        parts = urlsplit(str(url))
        key = (parts.scheme, parts.netloc, no_proxy)
        found = self._environment.get(key)
        if found is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            found = (get_environ_proxies(str(url), no_proxy=no_proxy), bundle)
            self._environment[key] = found  # one origin's answer; a race only computes it twice
        environment_proxies, bundle = found
        if proxies is not None:
            for scheme, proxy in environment_proxies.items():
                proxies.setdefault(scheme, proxy)
        if (verify is True or verify is None) and bundle:
            verify = bundle
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


def _arm_session() -> Session:
    """The HTTP session every ARM client of a gateway shares, its pool as large as the engine's
    parallel writes: azure-core's own session keeps 10 connections per host, so each call of a
    phase past the 10th opened a TCP + TLS connection and dropped it after ("Connection pool is
    full, discarding connection"). Retries stay off, as azure-core sets them: the engine retries.
    """
    session = _ArmSession()
    adapter = HTTPAdapter(
        pool_maxsize=MAX_PARALLEL_WRITES,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for prefix in ("http://", "https://"):
        session.mount(prefix, adapter)
    return session


@lru_cache(maxsize=4)
def _gateway_for(mode: str, fingerprint: str) -> AzureGateway:
    timeouts: dict[str, Any] = {
        "connection_timeout": settings.AZURE_HTTP_CONNECT_TIMEOUT,
        "read_timeout": settings.AZURE_HTTP_READ_TIMEOUT,
    }
    client_kwargs: dict[str, Any] = {
        **timeouts,
        "retry_total": settings.AZURE_SDK_RETRY_TOTAL,
        # Shared by the gateway's clients, which live as long as the process: none owns it.
        "session": _arm_session(),
        "session_owner": False,
    }
    hooks = azure_client_hooks()  # every ARM response counted (provisioning.metrics)
    counted = hooks["raw_response_hook"]

    def on_response(pipeline_response: Any) -> None:
        counted(pipeline_response)
        # ARM's remaining writes and a 429's Retry-After, fed back into the write limiter.
        observe_response(pipeline_response)

    client_kwargs.update({**hooks, "raw_response_hook": on_response})
    # The credential's token requests get the same limits: without them a token endpoint that
    # never answers holds the step for azure-core's default read timeout (300 s) per attempt.
    if mode == "emulator":
        url, ca_path, client = _emulator_settings()
        credential = ClientSecretCredential(
            client["tenant_id"],
            client["client_id"],
            client["client_secret"],
            authority=url,
            disable_instance_discovery=True,
            connection_verify=ca_path,
            **timeouts,
        )
        return AzureGateway(
            credential=credential,
            arm_url=url,
            authority=url,
            arm_scope=settings.AZURE_RESOURCE_MANAGER_SCOPE,
            connection_verify=ca_path,
            client_kwargs=client_kwargs,
        )
    # Real Azure: environment, workload identity (the portal on AKS), managed identity or CLI,
    # in the configured cloud. MSAL-based credentials skip instance discovery for an authority
    # outside the known clouds (private clouds, Azure Stack Hub), which would otherwise ask
    # login.microsoftonline.com about it before any token request.
    verify: str | bool = settings.AZURE_CA_BUNDLE or True
    tls: dict[str, Any] = {} if verify is True else {"connection_verify": verify}
    return AzureGateway(
        credential=DefaultAzureCredential(
            authority=settings.AZURE_AUTHORITY_HOST,
            disable_instance_discovery=not settings.AZURE_INSTANCE_DISCOVERY,
            **tls,
            **timeouts,
        ),
        arm_url=settings.AZURE_RESOURCE_MANAGER_URL,
        authority=settings.AZURE_AUTHORITY_HOST,
        arm_scope=settings.AZURE_RESOURCE_MANAGER_SCOPE,
        connection_verify=verify,
        client_kwargs=client_kwargs,
    )


def get_gateway() -> AzureGateway:
    """The process-wide gateway for the configured mode (rebuilt if the emulator moves)."""
    mode = settings.AZURE_MODE
    fingerprint = "|".join(
        str(value)
        for value in (
            settings.AZURE_RESOURCE_MANAGER_URL,
            settings.AZURE_AUTHORITY_HOST,
            settings.AZURE_RESOURCE_MANAGER_SCOPE,
            settings.AZURE_INSTANCE_DISCOVERY,
            settings.AZURE_CA_BUNDLE,
        )
    )
    if mode == "emulator":
        fingerprint += f"|{settings.EMULATOR_URL}|{settings.EMULATOR_STATE_DIR}"
        url_file = Path(settings.EMULATOR_STATE_DIR) / "url"
        if not settings.EMULATOR_URL and url_file.exists():
            fingerprint += "|" + url_file.read_text().strip()
    return _gateway_for(mode, fingerprint)
