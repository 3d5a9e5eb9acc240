"""The pipeline OIDC fetch trusts OIDC_ISSUER_CA_BUNDLE besides the system's CAs: an issuer on
a private CA (an on-premises GitLab) is reachable once its CA is named, and not before. The
emulator stands in for such an issuer: it serves HTTPS with a CA of its own (ca.pem)."""

from __future__ import annotations

from typing import Any

import pytest

from accounts import oidc
from tests.support.emulator import Emulator


@pytest.fixture
def private_issuer(settings: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings.OIDC_ALLOWED_HOSTS = ["127.0.0.1"]
    # Any JSON document over the emulator's TLS will do: its control API's configuration.
    return f"{emulator.url}/_emulator/config"


def test_an_issuer_on_a_private_ca_is_refused_without_its_bundle(
    settings: Any, private_issuer: str
) -> None:
    settings.OIDC_ISSUER_CA_BUNDLE = ""

    with pytest.raises(oidc.OidcTokenRefusedError) as refused:
        oidc._fetch_json(private_issuer, "document")

    assert refused.value.code == "issuer_unreachable"


def test_an_issuer_on_a_private_ca_is_read_with_its_bundle(
    settings: Any, private_issuer: str, emulator: Emulator
) -> None:
    settings.OIDC_ISSUER_CA_BUNDLE = str(emulator.ca_path)

    document = oidc._fetch_json(private_issuer, "document")

    assert "latency_ms" in document
