"""The domain tests' helpers (filing a request as alice), shared with the notification tests."""

from tests.identities.conftest import approved_request, file_request, pending_request

__all__ = ["approved_request", "file_request", "pending_request"]
