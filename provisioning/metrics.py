"""Prometheus metrics the workers update: Azure calls, retries and waits, steps, verification,
drift, approval-to-ready time, background tasks, and (once they exist) notification deliveries.

The objects live in the process that does the work. Under gunicorn and Celery prefork each
process writes its values to PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode,
chosen by that variable at import time) and the exporter of the pod adds them up; with no such
directory they live in the process and the default registry serves them (development, tests).
This module imports nothing of Django, so an exporter can read it before settings are loaded.

Every label value comes from a closed set (or is folded into one): unbounded values such as
resource names or request ids never become labels.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

# --- Azure Resource Manager ---------------------------------------------------------------------
AZURE_REQUESTS = Counter(
    "portal_azure_requests",
    "HTTP responses from Azure Resource Manager, by operation, HTTP status and ARM error code "
    "(empty on success). Every attempt counts, retries and 429s included.",
    ["operation", "status", "code"],
)
AZURE_REQUEST_DURATION = Histogram(
    "portal_azure_request_duration_seconds",
    "Time from sending an ARM request to its response, by operation.",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AZURE_RETRIES = Counter(
    "portal_azure_retries",
    "Transient Azure errors the engine retried, by reason (throttled: 429; wait_out: a service "
    "restarting; transient: 5xx, PrincipalNotFound, concurrent FIC writes...) and error code.",
    ["reason", "code"],
)
AZURE_RETRY_WAIT = Counter(
    "portal_azure_retry_wait_seconds",
    "Seconds the engine slept before retrying, by reason (Retry-After honoured for 429s).",
    ["reason"],
)
WRITES_DEFERRED = Counter(
    "portal_writes_deferred",
    "Provisioning runs sent again later because the write limiter's copy of a subscription's "
    "ARM bucket (writes or deletes) was empty, by kind.",
    ["kind"],
)
WRITES_DEFERRED_SECONDS = Counter(
    "portal_writes_deferred_seconds",
    "Seconds of countdown given to runs deferred for ARM's write budget, by kind.",
    ["kind"],
)
STEPS = Counter(
    "portal_provisioning_steps",
    "Provisioning steps (Azure writes) finished, by kind of step and outcome (done/failed).",
    ["step", "outcome"],
)

# --- Requests, verification, drift --------------------------------------------------------------
APPROVAL_TO_READY = Histogram(
    "portal_approval_to_ready_seconds",
    "Time from the approval that released a request to the request being ready, by kind.",
    ["kind"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
VERIFICATIONS = Counter(
    "portal_verifications",
    "Federation checks (token exchanges) recorded, by outcome "
    "(works, propagating, failed, inconclusive) and AADSTS code when it failed.",
    ["outcome", "code"],
)
DRIFT_CHECKS = Counter(
    "portal_drift_checks",
    "Identities compared with Azure, by result (in_sync, drifted, error).",
    ["result"],
)
DRIFT_FINDINGS = Counter(
    "portal_drift_findings",
    "Differences found between the database and Azure, by kind (identity_missing, "
    "fic_missing, fic_changed, role_assignment_missing, role_assignment_extra...).",
    ["kind"],
)

# --- Background tasks ---------------------------------------------------------------------------
TASKS = Counter(
    "portal_celery_tasks",
    "Celery tasks finished by this worker, by task name and state (SUCCESS, FAILURE, RETRY...).",
    ["task", "state"],
)

# --- Notifications (the outbox) -----------------------------------------------------------------
# The hook for the notification outbox (DESIGN.md "Later"): its delivery worker calls
# notification_delivered() / webhook_delivered() once per attempt. Nothing delivers yet, so these
# export no samples until then; the alert rules and dashboard already name them.
NOTIFICATIONS = Counter(
    "portal_notifications_delivered",
    "Notification deliveries attempted from the outbox, by channel (email, webhook) and "
    "outcome (sent, failed, retrying).",
    ["channel", "outcome"],
)
WEBHOOK_DELIVERY_DURATION = Histogram(
    "portal_webhook_delivery_duration_seconds",
    "Time for one signed webhook delivery attempt, by outcome.",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def notification_delivered(*, channel: str, outcome: str) -> None:
    """Count one delivery attempt of the outbox (email or webhook)."""
    NOTIFICATIONS.labels(channel=channel, outcome=outcome).inc()


def webhook_delivered(*, outcome: str, seconds: float) -> None:
    """Count and time one signed webhook delivery attempt."""
    notification_delivered(channel="webhook", outcome=outcome)
    WEBHOOK_DELIVERY_DURATION.labels(outcome=outcome).observe(seconds)


# --- Recording helpers --------------------------------------------------------------------------
# ARM resource types the portal calls; anything else is folded into "other".
_ARM_TYPES = {
    name.lower(): name
    for name in (
        "userAssignedIdentities",
        "federatedIdentityCredentials",
        "roleAssignments",
        "roleDefinitions",
        "managedClusters",
        "listClusterUserCredential",
    )
}
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,79}$")
_START = "portal_metrics_started"


def arm_operation(method: str, path: str) -> str:
    """`<resourceType>.<verb>` of an ARM URL path: `roleAssignments.put`, `managedClusters.get`,
    `federatedIdentityCredentials.list` (a GET of a collection)."""
    segments = [segment for segment in path.split("?")[0].split("/") if segment]
    lowered = [segment.lower() for segment in segments]
    if "providers" not in lowered:
        return "other"
    after = segments[len(lowered) - 1 - lowered[::-1].index("providers") + 1 :]
    # After /providers/: namespace, then type, name, type, name... ending on a type or a name.
    if len(after) < 2:
        return "other"
    ends_on_type = len(after) % 2 == 0
    resource_type = after[-1] if ends_on_type else after[-2]
    known = _ARM_TYPES.get(resource_type.lower())
    if known is None:
        return "other"
    verb = method.lower()
    if verb == "get" and ends_on_type:
        verb = "list"
    return f"{known}.{verb}"


def error_code(value: object) -> str:
    """An ARM error code fit for a label (codes are identifiers); anything else is "other"."""
    if not value:
        return ""
    text = str(value)
    return text if _CODE.match(text) else "other"


def _arm_error_code(http_response: Any) -> str:
    try:
        body = http_response.text()
        error = (http_response.headers.get("x-ms-error-code") or "") or (
            json.loads(body).get("error", {}).get("code", "") if body else ""
        )
    except (ValueError, AttributeError, TypeError):
        return "other"
    return error_code(error)


def _on_request(pipeline_request: Any) -> None:
    pipeline_request.context[_START] = time.monotonic()


def _on_response(pipeline_response: Any) -> None:
    request = pipeline_response.http_request
    http_response = pipeline_response.http_response
    operation = arm_operation(request.method, request.url.split("://", 1)[-1].split("/", 1)[-1])
    status = int(http_response.status_code)
    code = _arm_error_code(http_response) if status >= 400 else ""
    AZURE_REQUESTS.labels(operation=operation, status=str(status), code=code).inc()
    started = pipeline_response.context.get(_START)
    if started is not None:
        AZURE_REQUEST_DURATION.labels(operation=operation).observe(time.monotonic() - started)


def azure_client_hooks() -> dict[str, Callable[[Any], None]]:
    """Keyword arguments for the azure-mgmt clients: azure-core's CustomHookPolicy calls these
    on every attempt (it sits after the SDK's retry policy), so each ARM response is counted."""
    return {"raw_request_hook": _on_request, "raw_response_hook": _on_response}


def retry_recorded(*, reason: str, code: str, wait: float) -> None:
    AZURE_RETRIES.labels(reason=reason, code=error_code(code)).inc()
    AZURE_RETRY_WAIT.labels(reason=reason).inc(wait)


def writes_deferred(*, kind: str, countdown: float) -> None:
    WRITES_DEFERRED.labels(kind=kind).inc()
    WRITES_DEFERRED_SECONDS.labels(kind=kind).inc(countdown)


def step_kind(key: str) -> str:
    """The kind of a step from its key (`fic:NAME` → fic, `repair-role:12` → repair-role)."""
    return key.split(":", 1)[0][:40]


def step_finished(*, key: str, outcome: str) -> None:
    STEPS.labels(step=step_kind(key), outcome=outcome).inc()


def verification_recorded(*, outcome: str, code: str) -> None:
    VERIFICATIONS.labels(outcome=outcome, code=error_code(code)).inc()


def drift_recorded(*, result: str, finding_kinds: list[str]) -> None:
    DRIFT_CHECKS.labels(result=result).inc()
    for kind in finding_kinds:
        DRIFT_FINDINGS.labels(kind=error_code(kind)).inc()


def request_ready(*, kind: str, seconds: float) -> None:
    APPROVAL_TO_READY.labels(kind=kind).observe(max(0.0, seconds))


def task_finished(*, task: str, state: str) -> None:
    TASKS.labels(task=task[:100], state=state).inc()
