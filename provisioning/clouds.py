"""Which Azure cloud the portal talks to: ARM endpoint, Entra authority, token scopes.

One setting, AZURE_CLOUD (public, usgov, china or custom), fills the ARM endpoint, the
authority host and the ARM token scope from azure-identity's ``AzureAuthorityHosts`` and
azure-mgmt-core's ``get_arm_endpoints``; each can still be overridden. The ARM scope is not
always the endpoint plus ``/.default``: US Government's endpoint is management.usgovcloudapi.net,
its scope management.core.usgovcloudapi.net (azure-mgmt-core ``get_arm_endpoints``).

MSAL-based credentials look an unknown authority host up at
``login.microsoftonline.com/common/discovery/instance`` before any token request, which fails
for private clouds, Azure Stack Hub and any stand-in; instance discovery is therefore on only
for the known clouds' hosts unless AZURE_INSTANCE_DISCOVERY says otherwise (AZURE-FACTS §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from azure.core import AzureClouds
from azure.identity import AzureAuthorityHosts
from azure.mgmt.core.tools import get_arm_endpoints

CLOUDS = {
    "public": (AzureClouds.AZURE_PUBLIC_CLOUD, AzureAuthorityHosts.AZURE_PUBLIC_CLOUD),
    "usgov": (AzureClouds.AZURE_US_GOVERNMENT, AzureAuthorityHosts.AZURE_GOVERNMENT),
    "china": (AzureClouds.AZURE_CHINA_CLOUD, AzureAuthorityHosts.AZURE_CHINA),
}
CUSTOM = "custom"
KNOWN_AUTHORITY_HOSTS = frozenset(host for _cloud, host in CLOUDS.values())
# kubelogin: "AKS uses a pair of first party Azure AD applications. These application IDs are
# the same in all environments" (Azure/kubelogin docs/book/src/concepts/aks.md); a cluster with
# its own (legacy) AAD server app names it in the kubeconfig's `--server-id`.
AKS_AAD_SERVER_APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"


class CloudConfigurationError(ValueError):
    """The cloud settings do not name a usable cloud."""


@dataclass(frozen=True)
class Cloud:
    """Where ARM and Entra ID are, and what to ask Entra for."""

    name: str
    arm_endpoint: str  # no trailing slash
    authority_host: str  # https://host, no trailing slash
    arm_scope: str  # the scope of ARM tokens, also the audience of the verification exchange
    instance_discovery: bool


def _https(host_or_url: str) -> str:
    value = host_or_url.strip().rstrip("/")
    return value if "://" in value else f"https://{value}"


def instance_discovery_for(authority_host: str, setting: str = "auto") -> bool:
    """MSAL's instance discovery: `auto` = only for the known clouds' authority hosts."""
    if setting in {"on", "1", "true"}:
        return True
    if setting in {"off", "0", "false"}:
        return False
    if setting != "auto":
        raise CloudConfigurationError(
            f"AZURE_INSTANCE_DISCOVERY must be auto, on or off, got {setting!r}"
        )
    return (urlsplit(_https(authority_host)).hostname or "") in KNOWN_AUTHORITY_HOSTS


def resolve_cloud(
    name: str,
    *,
    arm_endpoint: str = "",
    authority_host: str = "",
    arm_scope: str = "",
    instance_discovery: str = "auto",
) -> Cloud:
    """The cloud `name` with any of its values overridden (empty = the cloud's own).

    A `custom` cloud (Azure Stack Hub, a private cloud, a stand-in) has no defaults: it needs
    the ARM endpoint and the authority host; its scope defaults to the endpoint's `/.default`.
    """
    name = (name or "public").lower()
    if name == CUSTOM:
        if not arm_endpoint or not authority_host:
            raise CloudConfigurationError(
                "AZURE_CLOUD=custom needs AZURE_RESOURCE_MANAGER_URL and AZURE_AUTHORITY_HOST"
            )
        endpoint = _https(arm_endpoint)
        scope = arm_scope or f"{endpoint}/.default"
        authority = _https(authority_host)
    elif name in CLOUDS:
        cloud_setting, default_authority = CLOUDS[name]
        arm = get_arm_endpoints(cloud_setting)
        endpoint = _https(arm_endpoint or arm["resource_manager"])
        # The scope stays the cloud's when only the endpoint is moved (a proxy or stand-in):
        # Entra issues tokens for the cloud's ARM audience, whatever host serves ARM.
        scope = arm_scope or arm["credential_scopes"][0]
        authority = _https(authority_host or default_authority)
    else:
        raise CloudConfigurationError(
            f"AZURE_CLOUD must be one of public, usgov, china or custom, got {name!r}"
        )
    return Cloud(
        name=name,
        arm_endpoint=endpoint,
        authority_host=authority,
        arm_scope=scope,
        instance_discovery=instance_discovery_for(authority, instance_discovery),
    )
