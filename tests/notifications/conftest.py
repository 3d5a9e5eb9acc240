"""The domain tests' helpers (filing a request as alice), shared with the notification tests."""

from typing import Any

import pytest

from tests.identities.conftest import approved_request, file_request, pending_request
from tests.support.tls_receiver import TestCA

__all__ = ["approved_request", "file_request", "pending_request"]


@pytest.fixture
def production_guard(settings: Any, test_ca: TestCA) -> None:
    """https only (no DEBUG, no WEBHOOK_ALLOW_HTTP); localhost is an allow-listed on-premises
    receiver (its address is loopback), and the test CA is trusted through the bundle."""
    settings.DEBUG = False
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.WEBHOOK_ALLOWED_HOSTS = ["localhost"]
    settings.WEBHOOK_ALLOWED_CIDRS = []
    settings.WEBHOOK_CA_BUNDLE = str(test_ca.bundle)
