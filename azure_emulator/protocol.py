"""Requests, responses and the three error dialects the emulator speaks.

- ARM: ``{"error": {"code", "message"}}`` (common-types ErrorResponse).
- Entra ID (OAuth2): ``{"error", "error_description": "AADSTS...", "error_codes", ...}``.
- Kubernetes: a ``Status`` object.

Handlers return a ``Response`` or raise one of the ``HttpError`` subclasses; the server turns
either into bytes on the wire, so no handler writes to a socket itself.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Request:
    """One HTTP request, already read off the socket."""

    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: Mapping[str, str]
    body: bytes
    base_url: str
    client_ip: str
    # What the request was about, for the request log and the fault_ops filter.
    op: str = ""
    # The verified ARM token claims of the caller (set by the pipeline before ARM handlers run).
    caller: dict[str, Any] = field(default_factory=dict)
    # Token requests: the scope asked for (no secret), written to the request log.
    scope: str | None = None

    def param(self, name: str) -> str | None:
        """A query parameter by name, ignoring case ($skipToken and $skiptoken are one)."""
        wanted = name.lower()
        for key, values in self.query.items():
            if key.lower() == wanted and values:
                return values[0]
        return None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def json(self, on_error: Callable[[str], Exception]) -> Any:
        """The body parsed as JSON; ``on_error(reason)`` is raised when it is not."""
        if not self.body.strip():
            raise on_error("The request body is empty.")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise on_error(str(exc)) from None


@dataclass
class Response:
    """What to send back. ``drop_connection`` closes the socket without answering."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    drop_connection: bool = False


def json_response(
    status: int,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
    error_code: str | None = None,
) -> Response:
    """A JSON response with the right Content-Type."""
    merged = {"Content-Type": JSON_TYPE, **(headers or {})}
    body = json.dumps(payload).encode()
    return Response(status, body, merged, error_code)


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, b"", dict(headers or {}))


class HttpError(Exception):
    """An error answer; subclasses format the body in their service's dialect."""

    status: int
    code: str

    def response(self) -> Response:
        raise NotImplementedError


class ArmError(HttpError):
    """An ARM error envelope."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        payload = {"error": {"code": self.code, "message": self.message}}
        return json_response(self.status, payload, headers=self.headers, error_code=self.code)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class OAuthError(HttpError):
    """An Entra ID token-endpoint error, shaped like AZURE-FACTS §4.4."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"AADSTS{aadsts}: {description}")
        self.status, self.error, self.aadsts, self.description = status, error, aadsts, description
        self.code = f"AADSTS{aadsts}"

    def response(self) -> Response:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        timestamp = utc_now().strftime("%Y-%m-%d %H:%M:%SZ")
        description = (
            f"AADSTS{self.aadsts}: {self.description}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        )
        payload = {
            "error": self.error,
            "error_description": description,
            "error_codes": [self.aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.aadsts}",
        }
        return json_response(
            self.status, payload, headers={"x-ms-request-id": trace_id}, error_code=self.code
        )


class KubeError(HttpError):
    """A Kubernetes ``Status`` failure."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message, self.details = status, reason, message, details
        self.code = reason

    def response(self) -> Response:
        payload: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.status,
        }
        if self.details is not None:
            payload["details"] = self.details
        return json_response(self.status, payload, error_code=self.reason)


def page(
    request: Request, items: list[dict[str, Any]], *, page_size: int, skip_param: str
) -> dict[str, Any]:
    """An ARM list page: always ``value``; ``nextLink`` absolute on this emulator when more remain.

    ``$top`` (when sent) sets the page size; the skip token is the offset of the next item.
    The nextLink keeps the client's other query parameters, as real ARM does.
    """
    top_raw = request.param("$top")
    size = page_size
    if top_raw is not None:
        if not top_raw.isdigit() or int(top_raw) < 1:
            raise ArmError(400, "InvalidParameter", f"The value '{top_raw}' of $top is invalid.")
        size = int(top_raw)
    token = request.param("$skiptoken")
    offset = 0
    if token is not None:
        if not token.isdigit():
            raise ArmError(400, "InvalidSkipToken", f"The skip token '{token}' is invalid.")
        offset = int(token)
    chunk = items[offset : offset + size]
    result: dict[str, Any] = {"value": chunk}
    if offset + size < len(items):
        kept = [
            (key, value)
            for key, values in request.query.items()
            if key.lower() != "$skiptoken"
            for value in values
        ]
        query = urlencode([*kept, (skip_param, str(offset + size))], safe="$'()")
        path = quote(request.path, safe="/()$'-_.~")
        result["nextLink"] = f"{request.base_url}{path}?{query}"
    return result


@dataclass
class Route:
    """A request matched to its handler, with what the pipeline needs to know about it.

    ``family`` picks the error dialect and whether ARM authentication applies; ``faulty`` says
    whether latency and fault injection apply; ``write`` and ``subscription`` drive throttling.
    """

    op: str
    family: str
    handler: Callable[[], Response]
    faulty: bool = False
    write: bool = False
    subscription: str | None = None
