"""The request pipeline: route, then (for Azure-facing calls) latency, faults, auth, throttling.

Order for ARM calls: latency -> fault (phase "before") -> bearer token -> api-version ->
write throttle -> handler -> fault (phase "after", the write already applied). Entra token
requests get latency and faults only; OIDC, Kubernetes and control requests get neither.
Every answer carries ``x-ms-request-id`` and is written to the request log.
"""

from __future__ import annotations

import ipaddress
import sys
import time
import traceback
import uuid
from typing import Any

from azure_emulator import (
    aks,
    control,
    entra,
    federated,
    kube,
    msi,
    rbac,
    resourcegraph,
    roledefs,
    schedules,
)
from azure_emulator import armcommon as arm
from azure_emulator.context import Context
from azure_emulator.faults import BUCKET_SIZES, GLOBAL_FACTOR, KNOB_PREFIXES
from azure_emulator.protocol import (
    ArmError,
    HttpError,
    KubeError,
    OAuthError,
    Request,
    Response,
    Route,
)

WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
# Polling and the reset that truncates the log would only add noise to it.
_UNLOGGED = frozenset({"control.requests", "control.health", "control.reset", "control.resources"})


class App:
    """Turns a ``Request`` into a ``Response``; shared by all server threads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def route(self, request: Request) -> Route | None:
        ctx = self.ctx
        first = request.path.strip("/").split("/", 1)[0].lower()
        if first == "_emulator":
            return control.route(ctx, request)
        if first in {"oidc", "k8s"}:
            return kube.route(ctx, request)
        if first in {"subscriptions", "providers"}:
            for module in (resourcegraph, rbac, schedules, roledefs, msi, federated, aks):
                found = module.route(ctx, request)
                if found is not None:
                    found.write = request.method in WRITE_METHODS
                    return found
            return None
        return entra.route(ctx, request)

    def handle(self, request: Request) -> Response:
        """Serve one request; never raises."""
        started = time.monotonic()
        generation = self.ctx.log.generation
        route = self.route(request)
        request.op = route.op if route else "unknown"
        try:
            response = self._serve(route, request)
        except HttpError as exc:
            response = exc.response()
        except Exception:
            traceback.print_exc(file=sys.stderr)
            response = ArmError(500, "InternalServerError", "The emulator failed.").response()
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        response.headers.setdefault("x-ms-correlation-request-id", str(uuid.uuid4()))
        if request.op not in _UNLOGGED:
            self._log(request, response, started, generation)
        return response

    def _log(self, request: Request, response: Response, started: float, generation: int) -> None:
        self.ctx.log.append(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "method": request.method,
                "path": request.path,
                "query": request.raw_query,
                "status": None if response.drop_connection else response.status,
                "duration_ms": round((time.monotonic() - started) * 1000, 2),
                "request_id": response.headers["x-ms-request-id"],
                "error": response.error_code,
                "op": request.op,
                **({"scope": request.scope} if request.scope is not None else {}),
            },
            generation=generation,
        )

    def _serve(self, route: Route | None, request: Request) -> Response:
        ctx = self.ctx
        if route is None:
            if request.path.lower().startswith(("/subscriptions", "/providers")):
                raise ArmError(
                    404,
                    "InvalidResourceType",
                    f"The emulator does not serve the resource path '{request.path}'.",
                )
            raise ArmError(404, "NotFound", f"No such endpoint: {request.method} {request.path}")
        if route.family == "control":
            if not (ctx.allow_remote_control or _is_loopback(request.client_ip)):
                raise ArmError(403, "Forbidden", "The control API answers loopback clients only.")
            return route.handler()
        if not route.faulty:
            return route.handler()
        knobs = ctx.knobs
        if knobs["latency_ms"] and route.family != "kube":  # ARM's and Entra's latency
            time.sleep(float(knobs["latency_ms"]) / 1000)
        fault = ctx.dice.roll(knobs, request.method, route.op)
        if fault is not None and knobs["fault_phase"] == "before":
            return self._fault(fault, route, knobs)
        try:
            response = self._authorised(route, request, knobs)
        except HttpError as exc:
            response = exc.response()
        if fault is not None:
            return self._fault(fault, route, knobs)
        return response

    def _authorised(self, route: Route, request: Request, knobs: Any) -> Response:
        if route.family != "arm":
            return route.handler()
        request.caller = entra.authenticate(self.ctx, request)
        arm.require_api_version(request)
        extra: dict[str, str] = {}
        if route.write:
            kind = "deletes" if request.method == "DELETE" else "writes"
            key = (route.subscription or "tenant").lower()
        else:
            # Reads are throttled per subscription (the id in the path), in their own bucket
            # ("Subscription | reads | 250 | 25", Learn request-limits-and-throttling.md).
            kind = "reads"
            key = _path_subscription(request.path) or "tenant"
        allowed, remaining, retry_after = self.ctx.throttle.take(key, knobs, kind)
        capacity = knobs[f"{KNOB_PREFIXES[kind]}_bucket_capacity"]
        # One principal here; the global budget is the others' share plus what it has left.
        others = (capacity or BUCKET_SIZES[kind]) * (GLOBAL_FACTOR - 1)
        extra[f"x-ms-ratelimit-remaining-subscription-{kind}"] = str(remaining)
        extra[f"x-ms-ratelimit-remaining-subscription-global-{kind}"] = str(others + remaining)
        if not allowed:
            # ARM's own throttling answer: code SubscriptionRequestsThrottled, message as
            # quoted from live ARM ("Number of 'read' requests for subscription '…' actor
            # '…' exceeded. Please try again after '10' seconds.", 2026); AZURE-FACTS §8.
            actor = str(request.caller.get("oid", "")) if request.caller else ""
            operation = {"deletes": "delete", "writes": "write", "reads": "read"}[kind]
            raise ArmError(
                429,
                "SubscriptionRequestsThrottled",
                f"Number of '{operation}' requests for subscription '{key}' actor '{actor}' "
                f"exceeded. Please try again after '{retry_after}' seconds.",
                headers={**extra, "Retry-After": str(retry_after)},
            )
        try:
            response = route.handler()
        except HttpError as exc:
            response = exc.response()
        response.headers.update(extra)
        return response

    def _fault(self, fault: str, route: Route, knobs: Any) -> Response:
        if fault == "timeout":
            time.sleep(float(knobs["fault_timeout_seconds"]))
            return Response(0, drop_connection=True, error_code="FaultTimeout")
        if route.family == "kube":
            # An API server's internal error, as a Kubernetes Status (apimachinery's
            # StatusReasonInternalError, HTTP 500).
            return KubeError(
                500, "InternalError", "Internal error injected by the emulator (fault_rate_500)."
            ).response()
        if route.family == "entra":
            return OAuthError(
                500, "server_error", 90033, "A transient error has occurred. Please try again."
            ).response()
        return ArmError(
            500,
            "InternalServerError",
            "Encountered internal server error. Diagnostic information: injected by the emulator "
            "(fault_rate_500).",
        ).response()


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _path_subscription(path: str) -> str:
    """The subscription id of `/subscriptions/{id}/...` (lower case), or "" for tenant paths."""
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1].lower()
    return ""
