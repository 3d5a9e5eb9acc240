"""The one error vocabulary of the gateways: everything the SDKs raise becomes one of these."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An Azure or Kubernetes call failed; carries what an operator needs to look it up."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        request_id: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def describe(self) -> str:
        """Human words + Azure code + request id, as stored in `last_error`."""
        parts = [self.message]
        if self.code:
            parts.append(f"(Azure code {self.code}")
            parts[-1] += f", HTTP {self.status})" if self.status else ")"
        if self.request_id:
            parts.append(f"[request id {self.request_id}]")
        return " ".join(parts)

    def as_dict(self) -> dict[str, object]:
        return {
            "message": self.message,
            "code": self.code,
            "status": self.status,
            "request_id": self.request_id,
        }


class TransientError(GatewayError):
    """Worth retrying: throttling, 5xx, timeouts, replication delay, concurrent FIC writes.

    `wait_out`: the error says a service is away for a while, not that the call was wrong
    (our own Redis restarting, say): like throttling, it is retried for a time budget instead
    of a number of attempts (see provisioning.retry)."""

    def __init__(self, message: str, *, wait_out: bool = False, **details: Any) -> None:
        super().__init__(message, **details)
        self.wait_out = wait_out


class PermanentError(GatewayError):
    """Retrying will not help: bad input, missing permission, a conflicting resource."""
