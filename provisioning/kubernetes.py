"""The Kubernetes gateway: the only code that talks to a cluster's API server.

Connection details come from AKS (`listClusterUserCredential` through the Azure gateway), so the
portal needs no kubeconfig of its own. Calls follow AZURE-FACTS §6.1 for kubernetes 37.x.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.util import make_headers

from identities.outbound import proxy_for, proxy_split
from provisioning.azure import AzureGateway
from provisioning.clouds import AKS_AAD_SERVER_APP_ID
from provisioning.errors import GatewayError, PermanentError, TransientError

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 - an audience URI, not a secret
FIELD_MANAGER = "workload-identity-portal"


@dataclass(frozen=True)
class ServiceAccountToken:
    token: str
    expires_at: datetime | None


@dataclass(frozen=True)
class ClusterConnection:
    server: str
    ca_data: str | None
    token: str


def _status_message(exc: ApiException) -> tuple[str, str]:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    return str(body.get("message") or exc.reason or exc), str(body.get("reason") or "")


@contextlib.contextmanager
def _k8s(operation: str) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        message, reason = _status_message(exc)
        status = exc.status or 0
        kind: type[GatewayError] = (
            TransientError if status in {408, 429} or status >= 500 else PermanentError
        )
        raise kind(f"{operation}: {message}", code=reason, status=status) from exc
    except Urllib3HTTPError as exc:
        raise TransientError(
            f"{operation}: cannot reach the cluster: {exc}", code="Network"
        ) from exc


def aks_server_app_id(exec_config: Any) -> str:
    """The AKS AAD server app the cluster trusts: kubelogin's `--server-id`, else the AKS-managed
    one (the same in every cloud, per kubelogin's docs)."""
    args = exec_config.get("args") if isinstance(exec_config, dict) else None
    if isinstance(args, list):
        for n, arg in enumerate(args):
            if arg == "--server-id" and n + 1 < len(args):
                return str(args[n + 1])
            if isinstance(arg, str) and arg.startswith("--server-id="):
                return arg.split("=", 1)[1]
    return AKS_AAD_SERVER_APP_ID


def connection_from_kubeconfig(
    kubeconfig: dict[str, Any], *, azure: AzureGateway | None = None
) -> ClusterConnection:
    """Server, CA and bearer token from an AKS kubeconfig (static token or kubelogin exec)."""
    try:
        context_name = kubeconfig.get("current-context")
        contexts = {c["name"]: c["context"] for c in kubeconfig.get("contexts", [])}
        context = contexts.get(context_name) if context_name else None
        clusters = {c["name"]: c["cluster"] for c in kubeconfig["clusters"]}
        users = {u["name"]: u["user"] for u in kubeconfig["users"]}
        cluster = clusters[context["cluster"]] if context else next(iter(clusters.values()))
        user = users[context["user"]] if context else next(iter(users.values()))
    except (KeyError, StopIteration, TypeError) as exc:
        raise PermanentError(f"the cluster's kubeconfig is incomplete: {exc}") from exc
    token = user.get("token") or ""
    if not token and "exec" in user:
        # AKS-managed Entra ID clusters: kubelogin would fetch a token for the AKS server app;
        # the portal asks for the same audience with its own credential instead.
        if azure is None:
            raise PermanentError("the cluster needs an Entra ID token but no credential is set")
        token = azure.credential.get_token(f"{aks_server_app_id(user['exec'])}/.default").token
    if not token:
        raise PermanentError("the cluster's kubeconfig has no usable user credential")
    ca_data = cluster.get("certificate-authority-data")
    return ClusterConnection(
        server=cluster["server"],
        ca_data=base64.b64decode(ca_data).decode() if ca_data else None,
        token=token,
    )


class KubernetesGateway:
    """Typed wrappers over the kubernetes client for one cluster."""

    def __init__(self, connection: ClusterConnection) -> None:
        configuration = k8s.Configuration(
            host=connection.server,
            api_key={"BearerToken": connection.token},
            api_key_prefix={"BearerToken": "Bearer"},
            ca_cert_data=connection.ca_data,
        )
        # The egress proxy as every other outbound call of the portal picks it (HTTPS_PROXY
        # unless NO_PROXY names the API server). urllib3's ProxyManager, which the client
        # uses, sends no Proxy-Authorization for credentials in the proxy's URL: they go as a
        # header, or an authenticating proxy answers 407 to every call.
        proxy = proxy_for(connection.server)
        if proxy:
            configuration.proxy, credentials = proxy_split(proxy)
            if credentials:
                configuration.proxy_headers = make_headers(proxy_basic_auth=credentials)
        else:
            configuration.proxy = None
        self.api_client = k8s.ApiClient(configuration)
        self.core = k8s.CoreV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()

    def __enter__(self) -> KubernetesGateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def _timeout() -> tuple[int, int]:
        """(connect, read) seconds for every call: the client waits forever without one
        (kubernetes.client's `_request_timeout`), so an API server that takes the connection
        and never answers would hold the task until its hard time limit."""
        return settings.AZURE_HTTP_CONNECT_TIMEOUT, settings.AZURE_HTTP_READ_TIMEOUT

    def request_token(
        self, *, namespace: str, service_account: str, expiration_seconds: int = 3600
    ) -> ServiceAccountToken:
        """A ServiceAccount token for Entra's token exchange (TokenRequest, ≥ 600 s)."""
        body = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[TOKEN_EXCHANGE_AUDIENCE],
                expiration_seconds=max(600, expiration_seconds),
            )
        )
        with _k8s(f"request a token for {namespace}/{service_account}"):
            response = self.core.create_namespaced_service_account_token(
                service_account, namespace, body, _request_timeout=self._timeout()
            )
        status = response.status
        if status is None or not status.token:
            raise PermanentError("the cluster answered the TokenRequest without a token")
        return ServiceAccountToken(token=status.token, expires_at=status.expiration_timestamp)

    def get_service_account(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            with _k8s(f"read ServiceAccount {namespace}/{name}"):
                model = self.core.read_namespaced_service_account(
                    name, namespace, _request_timeout=self._timeout()
                )
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(self.api_client.sanitize_for_serialization(model))

    def apply_service_account(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply under the portal's field manager (creates or updates)."""
        metadata = manifest["metadata"]
        with _k8s(f"apply ServiceAccount {metadata['namespace']}/{metadata['name']}"):
            model = self.core.patch_namespaced_service_account(
                metadata["name"],
                metadata["namespace"],
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _request_timeout=self._timeout(),
            )
        return dict(self.api_client.sanitize_for_serialization(model))

    def issuer_discovery(self) -> dict[str, Any]:
        """The API server's own OIDC discovery document (its service-account issuer)."""
        with _k8s("read the cluster's OIDC discovery document"):
            # 37.x returns str(dict) for this call, which is not JSON: read the raw body.
            response: Any = k8s.WellKnownApi(
                self.api_client
            ).get_service_account_issuer_open_id_configuration(
                _preload_content=False, _request_timeout=self._timeout()
            )
        return dict(json.loads(response.data))
