"""Proving a federation works: exchange a ServiceAccount token at Entra ID, explain failures.

Pure logic plus the one azure-identity call; the verification service stores the outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.identity import ClientAssertionCredential

from provisioning.azure import FicState

ARM_SCOPE = "https://management.azure.com/.default"
# No answer from the token endpoint (timeout, refused connection, TLS): nothing was decided.
TOKEN_ENDPOINT_UNREACHABLE = "TokenEndpointUnreachable"  # noqa: S105 - an error code
_AADSTS = re.compile(r"AADSTS(\d+)")

# What each code means for a workload identity (entra-docs reference-error-codes).
AADSTS_MEANINGS = {
    "70021": "No federated identity credential on the identity matches the token's issuer, "
    "subject and audience.",
    "700211": "No federated identity credential matches the token's issuer.",
    "700213": "No federated identity credential matches the token's subject.",
    "700024": "The ServiceAccount token is expired or not yet valid.",
    "700016": "No identity with this client id exists in the tenant.",
}


@dataclass(frozen=True)
class Mismatch:
    field: str
    expected: str
    presented: str
    explanation: str

    def as_dict(self) -> dict[str, str]:
        return {
            "field": self.field,
            "expected": self.expected,
            "presented": self.presented,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class ExchangeResult:
    ok: bool
    expires_at: datetime | None = None
    error_code: str = ""
    error_message: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a token, read without verifying it: only used to explain a refusal."""
    try:
        return dict(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        return {}


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud", [])
    return [aud] if isinstance(aud, str) else [str(a) for a in aud]


def explain_mismatch(claims: dict[str, Any], fic: FicState | None) -> list[Mismatch]:
    """Field-by-field differences between what the token presents and what the FIC expects."""
    presented_issuer = str(claims.get("iss", ""))
    presented_subject = str(claims.get("sub", ""))
    if fic is None:
        return [
            Mismatch(
                "federated_credential",
                "a federated credential on the identity",
                "none",
                "The identity has no federated credential for this ServiceAccount in Azure "
                "(it was deleted or never created): run repair.",
            )
        ]
    mismatches: list[Mismatch] = []
    if presented_issuer != fic.issuer:
        if presented_issuer.rstrip("/") == fic.issuer.rstrip("/"):
            why = (
                "The issuers differ only by the trailing slash. Entra compares them exactly; "
                "the FIC must use the issuer URL exactly as AKS reports it "
                "(az aks show --query oidcIssuerProfile.issuerUrl), slash included."
            )
        else:
            why = (
                "The token comes from a different OIDC issuer than the FIC trusts: the FIC was "
                "made for another cluster, or the cluster's issuer changed."
            )
        mismatches.append(Mismatch("issuer", fic.issuer, presented_issuer, why))
    if presented_subject != fic.subject:
        mismatches.append(
            Mismatch(
                "subject",
                fic.subject,
                presented_subject,
                "The FIC's subject must be system:serviceaccount:<namespace>:<serviceaccount> of "
                "the pod's ServiceAccount; check the namespace and the serviceAccountName.",
            )
        )
    audiences = _audiences(claims)
    if not any(aud in fic.audiences for aud in audiences):
        mismatches.append(
            Mismatch(
                "audience",
                ", ".join(fic.audiences),
                ", ".join(audiences),
                "The projected token's audience must be api://AzureADTokenExchange.",
            )
        )
    return mismatches


def exchange(
    *,
    tenant_id: str,
    client_id: str,
    assertion: str,
    authority: str,
    connection_verify: str | bool = True,
    connection_timeout: float = 10,
    read_timeout: float = 30,
) -> ExchangeResult:
    """Exchange the ServiceAccount token for an ARM access token, exactly as a pod would.

    The timeouts bound the token request (azure-core's own read timeout is 300 s)."""
    credential = ClientAssertionCredential(
        tenant_id,
        client_id,
        lambda: assertion,
        authority=authority,
        connection_verify=connection_verify,
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
    )
    try:
        access = credential.get_token(ARM_SCOPE)
    except ClientAuthenticationError as exc:
        message = str(exc.message or exc)
        found = _AADSTS.search(message)
        return ExchangeResult(
            ok=False,
            error_code=f"AADSTS{found.group(1)}" if found else "AuthenticationFailed",
            error_message=message.split("\r\n")[0].split("\n")[0][:1000],
        )
    except AzureError as exc:
        return ExchangeResult(
            ok=False,
            error_code=TOKEN_ENDPOINT_UNREACHABLE,
            error_message=f"{type(exc).__name__}: {str(exc.message or exc).splitlines()[0][:500]}",
        )
    finally:
        credential.close()
    return ExchangeResult(ok=True, expires_at=datetime.fromtimestamp(access.expires_on, tz=UTC))


def meaning(error_code: str) -> str:
    return AADSTS_MEANINGS.get(error_code.removeprefix("AADSTS"), "")
