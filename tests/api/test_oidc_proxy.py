"""The pipeline OIDC key fetch behind an egress proxy (HTTPS_PROXY): it goes through the same
SSRF guard as webhooks (tests/notifications/test_webhook_proxy.py covers the tunnel end to
end), so the proxy is asked for a tunnel to the vetted address, never for the name."""

from __future__ import annotations

from typing import Any

import pytest

from accounts import oidc
from tests.support.connect_proxy import ConnectProxy


def test_the_key_fetch_asks_the_proxy_for_the_vetted_address(
    settings: Any, behind_proxy: ConnectProxy
) -> None:
    settings.OIDC_ALLOWED_HOSTS = ["localhost"]  # an on-premises issuer on a loopback address
    behind_proxy.refuse = True  # the proxy's policy: no tunnel there

    with pytest.raises(oidc.OidcTokenRefusedError) as refused:
        oidc._fetch_json("https://localhost:8443/.well-known/openid-configuration", "document")

    assert behind_proxy.targets == ["127.0.0.1:8443"]
    assert refused.value.code == "issuer_unreachable"


def test_a_forbidden_issuer_address_never_reaches_the_proxy(
    settings: Any, behind_proxy: ConnectProxy
) -> None:
    settings.OIDC_ALLOWED_HOSTS = []

    with pytest.raises(oidc.OidcTokenRefusedError) as refused:
        oidc._fetch_json("https://localhost:8443/.well-known/openid-configuration", "document")

    assert refused.value.code == "issuer_forbidden_address"
    assert behind_proxy.targets == []
