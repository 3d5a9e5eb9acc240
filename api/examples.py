"""Examples shown in the OpenAPI documentation. The hand-over ones are rendered from a sample
spec by the real renderers, so they cannot drift from what the API returns."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample

from identities.handover import handover_document
from identities.manifests import MANIFEST_KINDS, HandoverSpec, RoleAssignmentSpec, render_bundle

SUBSCRIPTION = "6c3f1b2a-8d4e-4f5a-9b6c-7d8e9f0a1b2c"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "8f2c7a51-0e0b-4f6e-9b7d-2d3c4b5a6f70"
PRINCIPAL_ID = "ce2ce14e-85d7-4629-bdbc-454d0519d987"
VAULT_SCOPE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments"
)
IDENTITY_NAME = "aks-prod-payments-checkout"
IDENTITY_RESOURCE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-identities/providers"
    f"/Microsoft.ManagedIdentity/userAssignedIdentities/{IDENTITY_NAME}"
)
ISSUER = f"https://westeurope.oic.prod-aks.azure.com/{TENANT}/5b3c9d1e-aks-prod/"
CREATED = "2026-11-23T10:15:02.118Z"
UPDATED = "2026-11-23T10:21:47.530Z"


def _request_only(name: str, value: Any, summary: str = "") -> OpenApiExample:
    return OpenApiExample(name, value=value, summary=summary or name, request_only=True)


def _response(name: str, value: Any, status: int = 200, media_type: str = "") -> OpenApiExample:
    return OpenApiExample(
        name,
        value=value,
        response_only=True,
        status_codes=[str(status)],
        media_type=media_type or "application/json",
    )


def _page(results: list[Any]) -> dict[str, Any]:
    return {
        "next": "https://portal.example.com/api/v1/identity-requests/?cursor=cD0yMDI2LTExLTIz",
        "previous": None,
        "results": results,
    }


# --- identity requests ---------------------------------------------------------------------

REQUEST_BODY = {
    "app_name": "checkout",
    "team": "payments",
    "cluster": "aks-prod",
    "namespace": "payments",
    "service_account": "checkout",
    "roles": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}],
    "tags": {"costCentre": "cc-4711", "environment": "prod"},
    "justification": "Checkout reads its payment provider secrets from Key Vault.",
}
REQUEST_CREATE_INPUT = _request_only("new identity", REQUEST_BODY, "A new identity for checkout")


def _request(status: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": 42,
        "kind": "new",
        "status": status,
        "lifecycle_status": status,
        **{k: v for k, v in REQUEST_BODY.items() if k != "roles"},
        "is_exception": False,
        "requester": "alice",
        "roles": [
            {
                "role": "Key Vault Secrets User",
                "role_definition_guid": "4633458b-17de-408a-b874-0445c86b69e6",
                "scope": VAULT_SCOPE,
                "change": "",
            }
        ],
        "approvals": [],
        "approvals_required": 1,
        "last_error": "",
        "identity": None,
        "revision": 1,
        "revisions": [],
        "diff": None,
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    body.update(overrides)
    return body


_APPROVAL = {
    "approver": "sam",
    "decision": "approve",
    "comment": "Scoped to one vault.",
    "created_at": "2026-11-23T10:20:11.004Z",
}
_IDENTITY_READY = {
    "id": 7,
    "name": IDENTITY_NAME,
    "status": "ready",
    "client_id": CLIENT_ID,
    "principal_id": PRINCIPAL_ID,
    "tenant_id": TENANT,
    "resource_id": IDENTITY_RESOURCE_ID,
}
_IDENTITY_PROVISIONING = {
    **_IDENTITY_READY,
    "status": "provisioning",
    "client_id": None,
    "principal_id": None,
    "tenant_id": None,
    "resource_id": None,
}

REQUEST_PENDING = _response("pending", _request("pending"), status=201)
REQUEST_LIST = _response("a page", _page([_request("pending")]))
REQUEST_READY = _response(
    "ready",
    _request("ready", approvals=[_APPROVAL], identity=_IDENTITY_READY, updated_at=UPDATED),
)
REQUEST_DECOMMISSIONED = _response(
    "identity since decommissioned",
    _request(
        "ready",
        lifecycle_status="decommissioned",
        approvals=[_APPROVAL],
        identity={**_IDENTITY_READY, "status": "decommissioned"},
        updated_at=UPDATED,
    ),
)
REQUEST_APPROVED = _response(
    "approved", _request("approved", approvals=[_APPROVAL], identity=_IDENTITY_PROVISIONING)
)
REQUEST_PROVISIONING = _response(
    "provisioning again",
    _request("provisioning", approvals=[_APPROVAL], identity=_IDENTITY_PROVISIONING),
)
_LINKS = {
    "identity_request": "https://portal.example.com/api/v1/identity-requests/42/",
    "manifests": "https://portal.example.com/api/v1/identity-requests/42/manifests/",
}
ENSURE_EXISTING = _response(
    "identity exists",
    {
        **_request("ready", approvals=[_APPROVAL], identity=_IDENTITY_READY, updated_at=UPDATED),
        "outcome": "identity_exists",
        "links": {**_LINKS, "identity": "https://portal.example.com/api/v1/identities/7/"},
    },
)
ENSURE_CREATED = _response(
    "created",
    {**_request("pending"), "outcome": "created", "links": {**_LINKS, "identity": None}},
    status=201,
)
DRY_RUN = _response(
    "valid",
    {
        "valid": True,
        "errors": [],
        "warnings": [],
        "approvals_needed": {
            "approvers": 1,
            "owner_teams": [],
            "risk": {"level": "low", "reasons": ["Resource-scoped, non-privileged roles only."]},
        },
        "preview": {
            "identity_name": IDENTITY_NAME,
            "identity_resource_id": IDENTITY_RESOURCE_ID,
            "location": "westeurope",
            "federated_credential": {
                "name": "aks-prod-payments-checkout",
                "issuer": ISSUER,
                "subject": "system:serviceaccount:payments:checkout",
                "audience": "api://AzureADTokenExchange",
            },
            "role_assignments": [
                {
                    "role": "Key Vault Secrets User",
                    "role_definition_guid": "4633458b-17de-408a-b874-0445c86b69e6",
                    "scope": VAULT_SCOPE,
                }
            ],
            "manifests": "apiVersion: v1\nkind: ServiceAccount\n…",
            "placeholders": ["client_id", "principal_id", "tenant_id"],
        },
    },
)
REQUEST_CANCELLED = _response("cancelled", _request("cancelled"))
REQUEST_REJECTED = _response(
    "rejected",
    _request(
        "rejected",
        approvals=[{**_APPROVAL, "decision": "reject", "comment": "Use the shared vault."}],
    ),
)
REQUEST_DECOMMISSION = _response(
    "decommission filed",
    _request(
        "pending",
        id=57,
        kind="decommission",
        namespace="",
        service_account="",
        tags={},
        roles=[],
        justification="Checkout moved to the new payments platform.",
        identity=_IDENTITY_READY,
    ),
    status=201,
)
STORAGE_SCOPE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.Storage/storageAccounts/stpayments"
)
OLD_VAULT_SCOPE = VAULT_SCOPE + "-old"
CHANGE_INPUT = _request_only(
    "change roles",
    {
        "add": [{"role": "Storage Blob Data Reader", "scope": STORAGE_SCOPE}],
        "remove": [{"role": "Key Vault Secrets User", "scope": OLD_VAULT_SCOPE}],
        "justification": "Checkout now reads product images; the old vault is retired.",
    },
)
_SECRETS_USER = {
    "role": "Key Vault Secrets User",
    "role_definition_guid": "4633458b-17de-408a-b874-0445c86b69e6",
}
_BLOB_READER = {
    "role": "Storage Blob Data Reader",
    "role_definition_guid": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
}
REQUEST_CHANGE = _response(
    "change filed",
    _request(
        "pending",
        id=58,
        kind="change_roles",
        namespace="",
        service_account="",
        tags={},
        roles=[
            {**_BLOB_READER, "scope": STORAGE_SCOPE, "change": "add"},
            {**_SECRETS_USER, "scope": VAULT_SCOPE, "change": "keep"},
            {**_SECRETS_USER, "scope": OLD_VAULT_SCOPE, "change": "remove"},
        ],
        justification="Checkout now reads product images; the old vault is retired.",
        identity=_IDENTITY_READY,
        diff={
            "added": [{**_BLOB_READER, "scope": STORAGE_SCOPE}],
            "removed": [{**_SECRETS_USER, "scope": OLD_VAULT_SCOPE}],
            "unchanged": [{**_SECRETS_USER, "scope": VAULT_SCOPE}],
        },
    ),
    status=201,
)
SEND_BACK_INPUT = _request_only("send back", {"comment": "Use the shared vault kv-payments-2."})
EDIT_INPUT = _request_only(
    "edit",
    {
        "roles": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE + "-2"}],
        "justification": "Checkout reads its secrets from the shared vault kv-payments-2.",
    },
)
_REVISION = {
    "number": 1,
    "sent_back_by": "sam",
    "comment": "Use the shared vault kv-payments-2.",
    "created_at": "2026-11-23T10:18:40.112Z",
    "content": {
        "justification": "Checkout reads its payment provider secrets from Key Vault.",
        "is_exception": False,
        "roles": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}],
        "tags": {"costCentre": "cc-4711", "environment": "prod"},
    },
    "approvals": [],
    "changes_in_next": {
        "roles": {
            "added": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE + "-2"}],
            "dropped": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}],
        }
    },
}
REQUEST_SENT_BACK = _response("sent back", _request("sent_back"))
REQUEST_EDITED = _response(
    "edited",
    _request(
        "sent_back",
        roles=[
            {
                "role": "Key Vault Secrets User",
                "role_definition_guid": "4633458b-17de-408a-b874-0445c86b69e6",
                "scope": VAULT_SCOPE + "-2",
                "change": "",
            }
        ],
    ),
)
REQUEST_RESUBMITTED = _response(
    "resubmitted", _request("pending", revision=2, revisions=[_REVISION])
)
APPROVE_INPUT = _request_only("approve", {"comment": "Scoped to one vault."})
REJECT_INPUT = _request_only("reject", {"comment": "Use the shared vault kv-payments-shared."})
DECOMMISSION_INPUT = _request_only(
    "decommission", {"justification": "Checkout moved to the new payments platform."}
)

STEPS = _response(
    "steps",
    [
        {
            "key": "identity",
            "label": f"Create managed identity {IDENTITY_NAME}",
            "position": 0,
            "status": "done",
            "attempts": 1,
            "started_at": "2026-11-23T10:20:12.100Z",
            "finished_at": "2026-11-23T10:20:13.410Z",
            "duration_seconds": 1.31,
            "azure_request_id": "0f5c2a8e-3b1d-4c6f-9e7a-1d2b3c4d5e6f",
            "error": "",
        },
        {
            "key": "fic:aks-prod-payments-checkout",
            "label": "Federate system:serviceaccount:payments:checkout",
            "position": 1,
            "status": "running",
            "attempts": 2,
            "started_at": "2026-11-23T10:20:13.420Z",
            "finished_at": None,
            "duration_seconds": None,
            "azure_request_id": "",
            "error": "",
        },
    ],
)

_AUDIT_EVENT = {
    "id": 1812,
    "created_at": "2026-11-23T10:20:11.009Z",
    "actor": "sam",
    "actor_id": 4,
    "action": "identity_request.approved",
    "identity_request": 42,
    "identity": 7,
    "data": {"from": "pending", "to": "approved", "comment": "Scoped to one vault."},
    "prev_hash": "9c1185a5c5e9fc54612808977ee8f548b2258d31a6d1c3a6b0f5a7d8e9c0b1a2",
    "hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
}
AUDIT_PAGE = _response("a page", _page([_AUDIT_EVENT]))
AUDIT_EXPORT_JSONL = _response(
    "JSON Lines",
    '{"action":"identity_request.approved","actor_id":4,"actor_label":"sam",...}\n',
    media_type="application/jsonl",
)
AUDIT_EXPORT_CSV = _response(
    "CSV",
    "id,created_at,actor_id,actor_label,action,identity_request_id,identity_id,data,"
    "prev_hash,hash\n1812,2026-11-23T10:20:11.009000Z,4,sam,identity_request.approved,42,7,"
    '"{""comment"":""Scoped to one vault."",""from"":""pending"",""to"":""approved""}",'
    "9c11…,e3b0…\n",
    media_type="text/csv",
)

# --- hand-over -----------------------------------------------------------------------------

_SAMPLE_SPEC = HandoverSpec(
    app_name="checkout",
    namespace="payments",
    service_account="checkout",
    client_id=CLIENT_ID,
    tenant_id=TENANT,
    principal_id=PRINCIPAL_ID,
    identity_name=IDENTITY_NAME,
    identity_resource_id=IDENTITY_RESOURCE_ID,
    subscription_id=SUBSCRIPTION,
    resource_group="rg-identities",
    location="westeurope",
    cluster_name="aks-prod",
    cluster_resource_group="rg-aks-prod",
    oidc_issuer_url=ISSUER,
    fic_name="aks-prod-payments-checkout",
    fic_subject="system:serviceaccount:payments:checkout",
    role_assignments=(
        RoleAssignmentSpec(
            role_name="Key Vault Secrets User",
            role_definition_guid="4633458b-17de-408a-b874-0445c86b69e6",
            scope=VAULT_SCOPE,
            name="1b6c2a9e-5d4f-5a3b-8c7d-6e5f4a3b2c1d",
        ),
    ),
)
_KINDS = ["serviceaccount", "deployment"]
_BUNDLE = render_bundle(_SAMPLE_SPEC, _KINDS)
MANIFESTS_JSON = _response(
    "JSON",
    {
        "identity_request": 42,
        "kinds": _KINDS,
        "documents": [
            {"kind": kind, "manifest": MANIFEST_KINDS[kind](_SAMPLE_SPEC)} for kind in _KINDS
        ],
        "yaml": _BUNDLE,
    },
    media_type="application/json",
)
MANIFESTS_YAML = _response("YAML", _BUNDLE, media_type="application/yaml")

_DOCUMENT = handover_document(_SAMPLE_SPEC)
HANDOVER = _response(
    "hand-over",
    {
        "env_vars": [vars(v) for v in _DOCUMENT.env_vars],
        "sdk_minimums": [vars(s) for s in _DOCUMENT.sdk_minimums],
        "notes": list(_DOCUMENT.notes),
        "az_cli": [{"purpose": c.purpose, "command": c.shell} for c in _DOCUMENT.az_cli],
        "az_cli_script": _DOCUMENT.az_cli_script,
        "terraform": _DOCUMENT.terraform,
        "troubleshooting": [vars(t) for t in _DOCUMENT.troubleshooting[:2]],
    },
)
VERIFY_QUEUED = _response(
    "queued",
    {
        "status": "queued",
        "verifications": "https://portal.example.com/api/v1/identity-requests/42/verifications/",
    },
    status=202,
)
VERIFICATIONS = _response(
    "results",
    [
        {
            "id": 3,
            "outcome": "failed",
            "error_code": "AADSTS70021",
            "summary": "No matching federated identity record found for the presented assertion.",
            "mismatches": [
                {
                    "field": "issuer",
                    "expected": ISSUER,
                    "presented": ISSUER.rstrip("/"),
                    "explanation": "The issuer differs by its trailing slash; Entra ID compares "
                    "issuers byte for byte.",
                }
            ],
            "token_expires_at": "2026-11-23T11:21:50Z",
            "namespace": "payments",
            "service_account": "checkout",
            "created_at": "2026-11-23T10:21:50.210Z",
        }
    ],
)

# --- identities ----------------------------------------------------------------------------

_IDENTITY = {
    "id": 7,
    "name": IDENTITY_NAME,
    "team": "payments",
    "cluster": "aks-prod",
    "app_name": "checkout",
    "status": "ready",
    "drift_state": "in_sync",
    "drift_details": {},
    "drift_checked_at": "2026-11-23T11:00:00.000Z",
    "client_id": CLIENT_ID,
    "principal_id": PRINCIPAL_ID,
    "tenant_id": TENANT,
    "resource_id": IDENTITY_RESOURCE_ID,
    "subscription_id": SUBSCRIPTION,
    "resource_group": "rg-identities",
    "location": "westeurope",
    "tags": {"app": "checkout", "team": "payments", "managed-by": "workload-identity-portal"},
    "fic_usage": {"used": 1, "limit": 20},
    "federated_credentials": [
        {
            "id": 9,
            "name": "aks-prod-payments-checkout",
            "namespace": "payments",
            "service_account": "checkout",
            "issuer": ISSUER,
            "subject": "system:serviceaccount:payments:checkout",
            "audience": "api://AzureADTokenExchange",
            "status": "active",
        }
    ],
    "role_assignments": [
        {
            "id": 11,
            "role": "Key Vault Secrets User",
            "role_definition_guid": "4633458b-17de-408a-b874-0445c86b69e6",
            "scope": VAULT_SCOPE,
            "name": "1b6c2a9e-5d4f-5a3b-8c7d-6e5f4a3b2c1d",
            "status": "active",
        }
    ],
    "created_at": "2026-11-23T10:20:11.009Z",
    "updated_at": UPDATED,
}
IDENTITY = _response("identity", _IDENTITY)
IDENTITY_LIST = _response("a page", _page([_IDENTITY]))
REPAIR_QUEUED = _response("queued", {"status": "queued"}, status=202)

# --- catalog -------------------------------------------------------------------------------

CLUSTERS = _response(
    "clusters",
    [
        {
            "name": "aks-prod",
            "subscription_id": SUBSCRIPTION,
            "resource_group": "rg-identities",
            "location": "westeurope",
            "oidc_issuer_url": ISSUER,
            "workload_identity_enabled": True,
        }
    ],
)
NAMESPACES = _response(
    "owned", {"cluster": "aks-prod", "namespaces": ["payments", "payments-jobs"]}
)
ROLES = _response(
    "catalog",
    [
        {
            "name": "Key Vault Secrets User",
            "role_definition_guid": "4633458b-17de-408a-b874-0445c86b69e6",
            "description": "Read secret contents.",
            "resource_types": ["Microsoft.KeyVault/vaults"],
            "privileged": False,
            "can_assign_roles": False,
        }
    ],
)

# --- tokens --------------------------------------------------------------------------------

_TOKEN = {
    "id": 5,
    "name": "deploy-pipeline",
    "prefix": "wip_3xT9kQ2m",
    "scopes": ["read", "request"],
    "created_at": CREATED,
    "expires_at": "2027-02-21T10:15:02.118Z",
    "last_used_at": None,
    "revoked_at": None,
    "is_active": True,
}
TOKEN_LIST = _response("a page", _page([_TOKEN]))
TOKEN_CREATE_INPUT = _request_only(
    "pipeline token",
    {"name": "deploy-pipeline", "scopes": ["read", "request"], "expires_in_days": 90},
)
TOKEN_CREATED = _response(
    "created",
    {**_TOKEN, "token": "wip_" + "EXAMPLE0ONLY0NOT0A0REAL0TOKEN".ljust(42, "0")},
    status=201,
)
TOKEN_REVOKED = _response("revoked", {**_TOKEN, "revoked_at": UPDATED, "is_active": False})
ME = _response(
    "pipeline",
    {
        "username": "alice",
        "roles": ["requesters"],
        "teams": ["payments"],
        "token": {
            "id": 5,
            "name": "deploy-pipeline",
            "prefix": "wip_3xT9kQ2m",
            "scopes": ["read", "request"],
            "expires_at": "2027-02-21T10:15:02.118Z",
        },
    },
)

# --- access reviews and ownership transfers ----------------------------------------------------

CAMPAIGN = {
    "id": 3,
    "name": "Q4 recertification",
    "status": "open",
    "opened_by": "sam",
    "opened_at": CREATED,
    "due_at": "2026-12-15T17:00:00Z",
    "grace_days": 7,
    "revoke_when_overdue": True,
    "filter_team": None,
    "filter_role": None,
    "privileged_only": False,
    "item_count": 1240,
    "snapshot_sha256": "5f1d0c6e0b8a9d2c4e7f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c0d",
    "closed_at": None,
}
CAMPAIGN_OPEN_INPUT = _request_only(
    "open",
    {
        "name": "Q4 recertification",
        "due_at": "2026-12-15T17:00:00Z",
        "grace_days": 7,
        "revoke_when_overdue": True,
        "privileged_only": False,
    },
    "Every live identity, revoked 7 days after the due date if not attested",
)
CAMPAIGN_OUT = _response("campaign", CAMPAIGN)
CAMPAIGN_CREATED = _response("campaign", CAMPAIGN, status=201)
CAMPAIGN_LIST = _response("campaigns", _page([CAMPAIGN]))
CAMPAIGN_DETAIL = _response(
    "campaign with progress",
    {
        **CAMPAIGN,
        "progress": {
            "total": 1240,
            "done": 310,
            "percent": 25,
            "escalated": 0,
            "counts": {
                "keep": 280,
                "reduce": 20,
                "remove": 10,
                "revoked": 0,
                "awaiting_second": 4,
                "pending": 926,
            },
            "teams": [
                {"team": "payments", "total": 12, "done": 9, "counts": {"keep": 9, "pending": 3}}
            ],
        },
    },
)
REVIEW_ITEM = {
    "id": 9120,
    "campaign": 3,
    "identity_id": 7,
    "identity": IDENTITY_NAME,
    "team": "payments",
    "roles": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE, "privileged": False}],
    "privileged": False,
    "state": "decided",
    "decision": "keep",
    "decided_at": UPDATED,
    "escalated_at": None,
    "revoked_at": None,
    "follow_up_request": None,
    "attestations": [
        {
            "attester": "alice",
            "decision": "keep",
            "comment": "Checkout still reads its secrets.",
            "as_security": False,
            "time": UPDATED,
            "audit_row_id": 1907,
            "audit_row_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        }
    ],
}
REVIEW_ITEMS = _response("items", _page([REVIEW_ITEM]))
ATTEST_INPUT = _request_only(
    "keep", {"decision": "keep", "comment": "Checkout still reads its secrets."}
)
EVIDENCE_JSONL = _response(
    "JSON Lines",
    '{"campaign":3,"item":9120,"identity":"aks-prod-payments-checkout","team":"payments",'
    '"roles":["Key Vault Secrets User"],"scopes":["/subscriptions/…/vaults/kv-payments"],'
    '"attester":"alice","decision":"keep","as_security":false,"time":"2026-11-23T10:21:47Z",'
    '"audit_row_id":1907,"audit_row_hash":"e3b0…","item_state":"decided"}\n',
    media_type="application/jsonl",
)
EVIDENCE_CSV = _response(
    "CSV",
    "campaign,item,identity,team,roles,scopes,attester,decision,as_security,time,audit_row_id,"
    "audit_row_hash,item_state\n3,9120,aks-prod-payments-checkout,payments,Key Vault Secrets "
    "User,/subscriptions/…/vaults/kv-payments,alice,keep,False,2026-11-23T10:21:47Z,1907,"
    "e3b0…,decided\n",
    media_type="text/csv",
)
TRANSFER = {
    "id": 5,
    "identity_id": 7,
    "identity": IDENTITY_NAME,
    "from_team": "payments",
    "to_team": "search",
    "requested_by": "alice",
    "justification": "Search runs checkout from now on.",
    "status": "awaiting_consent",
    "consented_by": None,
    "decided_by": None,
    "comment": "",
    "created_at": CREATED,
}
TRANSFER_INPUT = _request_only(
    "transfer",
    {"identity": 7, "to_team": "search", "justification": "Search runs checkout from now on."},
)
TRANSFER_OUT = _response("transfer", TRANSFER)
TRANSFER_LIST = _response("transfers", _page([TRANSFER]))
TRANSFER_APPROVE_INPUT = _request_only("approve", {"comment": "Both teams agree."})
TRANSFER_REJECT_INPUT = _request_only("reject", {"comment": "Search does not run checkout."})
# --- a team's machines -----------------------------------------------------------------------

_TRUST_RULE_INPUT = {
    "team": "payments",
    "service_principal": "deploy-pipeline",
    "name": "GitHub Actions, production environment",
    "issuer": "https://token.actions.githubusercontent.com",
    "audience": "api://workload-identity-portal",
    "subject": "repo:contoso/payments:environment:production",
    "claims": {"repository": "contoso/payments"},
    "scopes": ["read", "request"],
}
_TRUST_RULE = {
    "id": 3,
    **_TRUST_RULE_INPUT,
    "service_principal": "svc:payments/deploy-pipeline",
    "subject_pattern": "",
    "created_at": CREATED,
    "created_by": "alice",
    "last_used_at": None,
    "disabled_at": None,
    "is_active": True,
}
TRUST_RULE_LIST = _response("a page", _page([_TRUST_RULE]))
TRUST_RULE_CREATE_INPUT = _request_only("GitHub Actions environment", _TRUST_RULE_INPUT)
TRUST_RULE_CREATED = _response("created", _TRUST_RULE, status=201)
TRUST_RULE_DISABLED = _response(
    "disabled", {**_TRUST_RULE, "disabled_at": UPDATED, "is_active": False}
)
_SERVICE_TOKEN = {
    **_TOKEN,
    "team": "payments",
    "service_principal": "svc:payments/nightly",
    "created_by": "alice",
}
SERVICE_TOKEN_LIST = _response("a page", _page([_SERVICE_TOKEN]))
SERVICE_TOKEN_CREATE_INPUT = _request_only(
    "nightly job",
    {
        "team": "payments",
        "service_principal": "nightly",
        "name": "nightly drift report",
        "scopes": ["read"],
        "expires_in_days": 90,
    },
)
SERVICE_TOKEN_CREATED = _response(
    "created",
    {**_SERVICE_TOKEN, "token": "wip_" + "EXAMPLE0ONLY0NOT0A0REAL0TOKEN".ljust(42, "0")},
    status=201,
)
SERVICE_TOKEN_REVOKED = _response(
    "revoked", {**_SERVICE_TOKEN, "revoked_at": UPDATED, "is_active": False}
)
# --- webhooks ----------------------------------------------------------------------------------
_WEBHOOK = {
    "id": 3,
    "team": "payments",
    "url": "https://hooks.payments.example.com/portal",
    "description": "Deploy bot",
    "events": ["request_approved", "request_ready", "request_failed"],
    "format": "standard",
    "is_active": True,
    "disabled_reason": "",
    "previous_secret_expires_at": None,
    "created_at": CREATED,
}
_EXAMPLE_SECRET = "whsec_" + "EXAMPLE0ONLY0NOT0A0REAL0SECRET".ljust(44, "0")
WEBHOOK_LIST = _response("payments' endpoints", [_WEBHOOK])
WEBHOOK_CREATE_INPUT = _request_only(
    "a team's endpoint",
    {
        "team": "payments",
        "url": "https://hooks.payments.example.com/portal",
        "events": ["request_approved", "request_ready", "request_failed"],
        "format": "standard",
        "description": "Deploy bot",
    },
)
WEBHOOK_CREATED = _response("created", {**_WEBHOOK, "secret": _EXAMPLE_SECRET}, status=201)
WEBHOOK = _response("an endpoint", _WEBHOOK)
WEBHOOK_CHANGE_INPUT = _request_only("switch it back on", {"is_active": True})
WEBHOOK_ROTATED = _response(
    "rotated",
    {**_WEBHOOK, "previous_secret_expires_at": UPDATED, "secret": _EXAMPLE_SECRET},
)
_DELIVERY = {
    "id": 41,
    "event": "request_ready",
    "webhook_id": "msg_5f1c0a3e9b7d4c2a8e6f0b1d3c5a7e9f",
    "delivery_status": "pending",
    "attempted_at": UPDATED,
    "status_code": 503,
    "duration_ms": 212,
    "error": "The receiver answered 503.",
}
WEBHOOK_DELIVERIES = _response("a failed attempt", [_DELIVERY])
WEBHOOK_REDELIVERED = _response("queued again", _DELIVERY, status=202)
