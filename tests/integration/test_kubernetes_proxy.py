"""The Kubernetes gateway behind an egress proxy: HTTPS_PROXY's tunnel to the API server, with
the proxy's Basic credentials sent (the kubernetes client's urllib3 ProxyManager sends none from
the URL by itself), and NO_PROXY's exceptions going direct, as every outbound call of the portal
picks its proxy (identities.outbound.proxy_for)."""

from __future__ import annotations

import base64

import pytest

from provisioning.kubernetes import ClusterConnection, KubernetesGateway
from tests.support.connect_proxy import ConnectProxy
from tests.support.sandbox import Sandbox

PROXY_SETTINGS = ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def cluster_connection(sandbox: Sandbox) -> ClusterConnection:
    # Read before any proxy is set: the ARM call that hands out the kubeconfig is not the
    # subject here.
    return sandbox.cluster_connection()


def _only_proxy_settings(monkeypatch: pytest.MonkeyPatch, https_proxy: str, no_proxy: str) -> None:
    for name in PROXY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", https_proxy)
    if no_proxy:
        monkeypatch.setenv("NO_PROXY", no_proxy)


def _api_server(connection: ClusterConnection) -> str:
    return connection.server.split("://", 1)[1].split("/", 1)[0]


def test_calls_go_through_the_proxy_with_its_credentials(
    cluster_connection: ClusterConnection,
    connect_proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = connect_proxy.server.server_address[1]
    # A user name with an @, percent-encoded in the URL as it must be.
    _only_proxy_settings(monkeypatch, f"http://ci%40corp:s3cret@127.0.0.1:{port}", "")

    with KubernetesGateway(cluster_connection) as kube:
        assert kube.get_service_account(namespace="default", name="not-there") is None

    assert connect_proxy.targets == [_api_server(cluster_connection)]
    expected = "Basic " + base64.b64encode(b"ci@corp:s3cret").decode()
    assert connect_proxy.authorizations == [expected]


def test_an_api_server_no_proxy_names_is_reached_directly(
    cluster_connection: ClusterConnection,
    connect_proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _only_proxy_settings(monkeypatch, connect_proxy.url, "localhost,127.0.0.1")

    with KubernetesGateway(cluster_connection) as kube:
        assert kube.get_service_account(namespace="default", name="not-there") is None

    assert connect_proxy.targets == []
