"""Name and format rules from Kubernetes and Azure (AZURE-FACTS.md §2), as pure predicates.

The policy engine, the model validators and the naming helpers all use these, so a rule is
written once. Each `is_*` function answers one question and never raises.
"""

from __future__ import annotations

import re
import unicodedata

from django.core.exceptions import ValidationError

# Kubernetes (apimachinery validation.IsDNS1123Label / IsDNS1123Subdomain).
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

# Namespaces the platform owns: never granted to a team. `kube-*` covers kube-system, kube-public
# and kube-node-lease; the rest are created by AKS add-ons.
RESERVED_NAMESPACES = frozenset(
    {
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "gatekeeper-system",
        "calico-system",
        "tigera-operator",
        "app-routing-system",
        "aks-command",
        "aks-istio-system",
        "aks-istio-ingress",
        "aks-istio-egress",
    }
)
RESERVED_NAMESPACE_PREFIXES = ("kube-",)

# Azure (AZURE-FACTS §2.4, §2.5).
UAMI_NAME_MIN, UAMI_NAME_MAX = 3, 128
FIC_NAME_MIN, FIC_NAME_MAX = 3, 120
FIC_FIELD_MAX = 600  # issuer, subject and audience
FIC_LIMIT_PER_IDENTITY = 20
_AZURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# AKS cluster names: 1-63 alphanumerics, underscores and hyphens, alphanumeric at both ends.
_AKS_CLUSTER_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Resource groups: 1-90 of alphanumerics, underscore, parentheses, hyphen, period (and unicode
# letters), not ending in a period.
_RESOURCE_GROUP = re.compile(r"[\w().-]{0,89}[\w()-]")

# Azure tags (Learn "Use tags to organize your Azure resources", limitations).
TAGS_MAX = 50
TAG_KEY_MAX = 512
TAG_VALUE_MAX = 256
TAG_KEY_FORBIDDEN = frozenset("<>%&\\?/")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= DNS1123_LABEL_MAX and _DNS1123_LABEL.fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= DNS1123_SUBDOMAIN_MAX and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def is_reserved_namespace(value: str) -> bool:
    return value in RESERVED_NAMESPACES or value.startswith(RESERVED_NAMESPACE_PREFIXES)


def is_uami_name(value: str) -> bool:
    return (
        UAMI_NAME_MIN <= len(value) <= UAMI_NAME_MAX
        and _AZURE_NAME.fullmatch(value) is not None
        and value.isascii()
    )


def is_fic_name(value: str) -> bool:
    return (
        FIC_NAME_MIN <= len(value) <= FIC_NAME_MAX
        and _AZURE_NAME.fullmatch(value) is not None
        and value.isascii()
    )


def is_aks_cluster_name(value: str) -> bool:
    return value.isascii() and _AKS_CLUSTER_NAME.fullmatch(value) is not None


def is_guid(value: str) -> bool:
    return _GUID.fullmatch(value) is not None


def is_resource_group_name(value: str) -> bool:
    return _RESOURCE_GROUP.fullmatch(value) is not None


def tag_key_problem(key: str) -> str | None:
    """Why Azure would refuse this tag name, or None."""
    if not key.strip():
        return "is empty"
    if len(key) > TAG_KEY_MAX:
        return f"is longer than {TAG_KEY_MAX} characters"
    bad = sorted(set(key) & TAG_KEY_FORBIDDEN)
    if bad:
        return "contains " + " ".join(repr(ch) for ch in bad) + " (not allowed in tag names)"
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        # Azure/azure-resource-manager-rpc resource-api-reference.md (tags): "The tag name
        # cannot include: '<', '>', '%', '&', '\\', '?', '/', and any control characters."
        return "contains a control character (not allowed in tag names)"
    return None


# --- ARM resource ids ----------------------------------------------------------------------------

SCOPE_SUBSCRIPTION = "subscription"
SCOPE_RESOURCE_GROUP = "resource_group"
SCOPE_RESOURCE = "resource"

# A scope travels into an ARM URL unescaped (the SDK formats it with skip_quote), so anything an
# HTTP client or ARM would reinterpret changes which resource is granted: `..` segments are
# removed before sending (RFC 3986 §5.2.4), `?` and `#` end the path, `%xx` decodes to any of
# those. Such a scope is refused outright, never normalised: the approver must see exactly what
# Azure will receive.
SCOPE_MAX_LENGTH = 1024  # RequestedRole.scope / RoleAssignment.scope column width
_SCOPE_FORBIDDEN_CHARACTERS = {"?": "'?'", "#": "'#'", "\\": "a backslash"}


def scope_problem(value: str) -> tuple[str, str] | None:
    """Why `value` is not a plain ARM path that means the same to the portal and to Azure.

    Returns (rule, explanation) for the first problem found, or None. The rules: no `.`/`..`
    segment, no percent-encoding, no `?`/`#`/backslash, no whitespace or control character, at
    most SCOPE_MAX_LENGTH characters. `identities.scopes.parse_scope` refuses every such string.
    """
    if len(value) > SCOPE_MAX_LENGTH:
        return "scope_too_long", f"is {len(value)} characters long; at most {SCOPE_MAX_LENGTH}"
    if any(segment in {".", ".."} for segment in value.split("/")):
        return (
            "scope_dot_segment",
            "contains a '.' or '..' path segment, which would make Azure grant the role on a "
            "different (usually broader) scope",
        )
    if "%" in value:
        return "scope_percent_encoding", "contains '%': percent-encoded characters are not allowed"
    for character, name in _SCOPE_FORBIDDEN_CHARACTERS.items():
        if character in value:
            return (
                "scope_forbidden_character",
                f"contains {name}, which is not part of a resource id",
            )
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return (
            "scope_forbidden_character",
            "contains whitespace or a control character, which is not part of a resource id",
        )
    return None


# Canonical casing of the fixed segments of the resource ids the portal emits. ARM matches them
# case-insensitively and answers some in lower case (`/resourcegroups/`), but the azurerm
# Terraform provider parses ids case-sensitively (go-azure-helpers' resourceids parser: "parsing
# segment "staticResourceGroups": expected the segment "resourcegroups" to be "resourceGroups"",
# terraform-provider-azurerm#14456, #14853); the casing is the one of its id definitions
# (hashicorp/pandora common ids, e.g. UserAssignedIdentity) and of the REST specs' paths.
_CANONICAL_KEYWORDS = {
    "subscriptions": "subscriptions",
    "resourcegroups": "resourceGroups",
    "providers": "providers",
}
_CANONICAL_TYPES: dict[str, tuple[str, dict[str, str]]] = {
    namespace.lower(): (namespace, {t.lower(): t for t in types})
    for namespace, types in (
        (
            "Microsoft.ManagedIdentity",
            ("userAssignedIdentities", "federatedIdentityCredentials"),
        ),
        ("Microsoft.Authorization", ("roleAssignments", "roleDefinitions")),
        ("Microsoft.ContainerService", ("managedClusters",)),
        ("Microsoft.KeyVault", ("vaults", "secrets", "keys")),
        (
            "Microsoft.Storage",
            (
                "storageAccounts",
                "blobServices",
                "containers",
                "queueServices",
                "queues",
                "tableServices",
                "tables",
                "fileServices",
                "shares",
            ),
        ),
        ("Microsoft.ServiceBus", ("namespaces", "queues", "topics", "subscriptions")),
        ("Microsoft.EventHub", ("namespaces", "eventhubs", "consumergroups")),
        ("Microsoft.DocumentDB", ("databaseAccounts", "sqlRoleAssignments", "sqlRoleDefinitions")),
        ("Microsoft.ContainerRegistry", ("registries",)),
        ("Microsoft.AppConfiguration", ("configurationStores",)),
        ("Microsoft.Network", ("dnsZones", "privateDnsZones")),
    )
}


def canonical_arm_id(value: str) -> str:
    """`value` with the fixed segments of an ARM resource id in canonical casing.

    `subscriptions`, `resourceGroups`, `providers`, and the provider namespaces and resource
    types the portal emits (`Microsoft.ManagedIdentity/userAssignedIdentities`,
    `federatedIdentityCredentials`, `Microsoft.Authorization/roleAssignments`, ...) are
    rewritten; names (subscription id, resource group, resource names) and unknown namespaces or
    types are kept exactly. Only letter case ever changes, so the result equals `value` ignoring
    case; pure, total (any string in, never raises) and idempotent.
    """
    parts = value.split("/")
    out = list(parts)
    i = 1 if parts and parts[0] == "" else 0
    namespace: dict[str, str] | None = None
    # Walk keyword/name pairs; after `providers`, a namespace and then type/name pairs, until a
    # nested `providers` (an extension resource such as a role assignment on a scope).
    while i < len(parts):
        keyword = parts[i].lower()
        if namespace is None or keyword == "providers":
            if keyword not in _CANONICAL_KEYWORDS:
                i += 2
                continue
            out[i] = _CANONICAL_KEYWORDS[keyword]
            if keyword == "providers" and i + 1 < len(parts):
                known = _CANONICAL_TYPES.get(parts[i + 1].lower())
                namespace = known[1] if known else {}
                if known:
                    out[i + 1] = known[0]
                i += 2
                continue
            i += 2
            continue
        if keyword in namespace:
            out[i] = namespace[keyword]
        i += 2
    return "/".join(out)


# --- Django field validators (admin forms run these; services call full_clean) ---------------


def validate_dns1123_label(value: str) -> None:
    if not is_dns1123_label(value):
        raise ValidationError(
            "%(value)s is not a DNS-1123 label (lowercase letters, digits and '-', "
            "alphanumeric at both ends, at most 63 characters).",
            params={"value": repr(value)},
        )


def validate_namespace_grantable(value: str) -> None:
    validate_dns1123_label(value)
    if is_reserved_namespace(value):
        raise ValidationError(
            "%(value)s is reserved for the platform and can never be granted to a team.",
            params={"value": repr(value)},
        )


def validate_aks_cluster_name(value: str) -> None:
    if not is_aks_cluster_name(value):
        raise ValidationError(
            "%(value)s is not a valid AKS cluster name (1-63 alphanumerics, '_' and '-', "
            "alphanumeric at both ends).",
            params={"value": repr(value)},
        )


def validate_guid(value: str) -> None:
    if not is_guid(value):
        raise ValidationError("%(value)s is not a GUID.", params={"value": repr(value)})


def validate_guid_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and is_guid(v) for v in value):
        raise ValidationError("Enter a list of subscription ids (GUIDs).")


def validate_resource_group(value: str) -> None:
    if not is_resource_group_name(value):
        raise ValidationError(
            "%(value)s is not a valid resource group name.", params={"value": repr(value)}
        )


def validate_oidc_issuer_url(value: str) -> None:
    """Stored exactly as Azure reports it: the FIC issuer must match the token's `iss` byte for
    byte, so this validates and never normalizes (a trailing slash is kept)."""
    if value != value.strip() or any(ch.isspace() for ch in value):
        raise ValidationError("The OIDC issuer URL must not contain whitespace.")
    if not value.startswith("https://") or len(value) <= len("https://"):
        raise ValidationError("The OIDC issuer URL must be an https:// URL.")
    if len(value) > FIC_FIELD_MAX:
        raise ValidationError(f"The OIDC issuer URL must be at most {FIC_FIELD_MAX} characters.")


def validate_string_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError("Enter a list of non-empty strings.")
