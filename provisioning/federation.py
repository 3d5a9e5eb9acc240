"""Proving a federation works: exchange a ServiceAccount token at Entra ID, explain failures.

Pure logic plus the one azure-identity call; the verification service stores the outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import jwt
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.identity import ClientAssertionCredential

from provisioning.azure import FicState

# The public cloud's; the verification passes the configured cloud's (AzureGateway.arm_scope).
ARM_SCOPE = "https://management.azure.com/.default"
# No answer from the token endpoint (timeout, refused connection, TLS): nothing was decided.
TOKEN_ENDPOINT_UNREACHABLE = "TokenEndpointUnreachable"  # noqa: S105 - an error code
# Entra answered the exchange with 5xx, 429 or temporarily_unavailable: it decided nothing.
TOKEN_ENDPOINT_BUSY = "TokenEndpointBusy"  # noqa: S105 - an error code
_AADSTS = re.compile(r"AADSTS(\d+)")


class Refusal(StrEnum):
    """What an AADSTS refusal of a token exchange means, whatever its number.

    Entra has renumbered these over time (70021 for every "no matching federated identity
    record"; today 700211 for the issuer, 700213 for the subject, 7002138 for a subject equal
    but for case), so the portal decides on the meaning, never on one code.
    """

    NO_MATCH = "no_match"  # no credential matches; which field, not said (70021)
    ISSUER_NOT_FOUND = "issuer_not_found"
    SUBJECT_NOT_FOUND = "subject_not_found"
    SUBJECT_CASE = "subject_case"  # equal ignoring case: matching is case-sensitive
    AUDIENCE = "audience"
    ASSERTION_EXPIRED = "assertion_expired"
    CLIENT_NOT_FOUND = "client_not_found"
    TENANT = "tenant"
    SIGNATURE = "signature"
    ISSUER_UNREACHABLE = "issuer_unreachable"
    OTHER = "other"


# The "no matching federated identity record" family: while a new credential propagates, Entra
# answers any of these although the credential is right (AZURE-FACTS §2.4, §8).
NOT_FOUND_REFUSALS = frozenset(
    {
        Refusal.NO_MATCH,
        Refusal.ISSUER_NOT_FOUND,
        Refusal.SUBJECT_NOT_FOUND,
        Refusal.SUBJECT_CASE,
        Refusal.AUDIENCE,
    }
)

# Sources: entra-docs reference-error-codes; Azure/azure-workload-identity#616 (70021), #1200
# (700211, 700213); Azure/login#482 (700213), #515 (7002138). 700212 (audience) follows the
# numbering; no public body was found for it.
_REFUSALS = {
    "70021": Refusal.NO_MATCH,
    "700211": Refusal.ISSUER_NOT_FOUND,
    "700212": Refusal.AUDIENCE,
    "700213": Refusal.SUBJECT_NOT_FOUND,
    "7002138": Refusal.SUBJECT_CASE,
    "700024": Refusal.ASSERTION_EXPIRED,
    "700016": Refusal.CLIENT_NOT_FOUND,
    "90002": Refusal.TENANT,
    "900023": Refusal.TENANT,
    "700027": Refusal.SIGNATURE,
    "90061": Refusal.ISSUER_UNREACHABLE,
    # "AADSTS50166: Request to External OIDC endpoint failed" (Azure/azure-workload-identity
    # #642, #1130; entra-docs lists 50166 ExternalClaimsProviderThrottled), and its 501661 form
    # (Azure/login#283): Entra could not read the issuer's discovery document or keys.
    "50166": Refusal.ISSUER_UNREACHABLE,
    "501661": Refusal.ISSUER_UNREACHABLE,
    # "AADSTS70025: The client '…' has no configured federated identity credentials."
    # (dotnet-foundation/projects#503): a new identity's first credential not visible yet
    # answers it too (azure-workload-identity FAQ: a token request right after a credential is
    # added "might lead to failure for a couple of minutes"), so it is of the not-found family.
    "70025": Refusal.NO_MATCH,
}

_MEANINGS = {
    Refusal.NO_MATCH: "No federated identity credential on the identity matches the token's "
    "issuer, subject and audience.",
    Refusal.ISSUER_NOT_FOUND: "No federated identity credential matches the token's issuer.",
    Refusal.SUBJECT_NOT_FOUND: "No federated identity credential matches the token's subject.",
    Refusal.SUBJECT_CASE: "The token's subject matches a federated identity credential only "
    "when case is ignored; Entra compares subjects case-sensitively.",
    Refusal.AUDIENCE: "No federated identity credential matches the token's audience.",
    Refusal.ASSERTION_EXPIRED: "The ServiceAccount token is expired or not yet valid.",
    Refusal.CLIENT_NOT_FOUND: "No identity with this client id exists in the tenant.",
    Refusal.TENANT: "The tenant in the token request is not known to Entra ID.",
    Refusal.SIGNATURE: "The ServiceAccount token's signature does not verify with the keys "
    "the cluster's issuer publishes.",
    Refusal.ISSUER_UNREACHABLE: "Entra ID could not read the issuer's OIDC discovery document "
    "or keys.",
}


def refusal(error_code: str) -> Refusal:
    """The meaning of an AADSTS code (``AADSTS700211`` or ``700211``)."""
    return _REFUSALS.get(error_code.removeprefix("AADSTS"), Refusal.OTHER)


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
        why = (
            "The FIC's subject must be system:serviceaccount:<namespace>:<serviceaccount> of "
            "the pod's ServiceAccount; check the namespace and the serviceAccountName."
        )
        if presented_subject.lower() == fic.subject.lower():
            why = (
                "The subjects differ only in case; Entra compares them case-sensitively "
                "(AADSTS7002138). Kubernetes names are lower case: fix the FIC's subject."
            )
        mismatches.append(Mismatch("subject", fic.subject, presented_subject, why))
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


def name_the_strings(
    refused: Refusal,
    claims: dict[str, Any],
    *,
    cluster_issuer: str,
    expected_subject: str,
    audience: str,
) -> list[Mismatch]:
    """For a "not found" refusal that ARM's copy of the credential does not explain (it matches
    the token) and that outlived the propagation window: the strings to compare, by meaning."""
    presented_issuer = str(claims.get("iss", ""))
    presented_subject = str(claims.get("sub", ""))
    stale = (
        " If they are equal character for character, Entra's record of the credential is "
        "stale: delete and recreate it (repair)."
    )
    issuer = Mismatch(
        "issuer",
        cluster_issuer,
        presented_issuer,
        "Entra ID finds no federated credential for the issuer the token presents. Compare the "
        "credential's issuer with the cluster's OIDC issuer (az aks show --query "
        "oidcIssuerProfile.issuerUrl), trailing slash included." + stale,
    )
    subject = Mismatch(
        "subject",
        expected_subject,
        presented_subject,
        "Entra ID finds no federated credential for the subject the token presents. It must be "
        "system:serviceaccount:<namespace>:<serviceaccount>, compared case-sensitively." + stale,
    )
    if refused == Refusal.ISSUER_NOT_FOUND:
        return [issuer]
    if refused in {Refusal.SUBJECT_NOT_FOUND, Refusal.SUBJECT_CASE}:
        return [subject]
    if refused == Refusal.AUDIENCE:
        return [
            Mismatch(
                "audience",
                audience,
                ", ".join(_audiences(claims)),
                "Entra ID finds no federated credential for the token's audience." + stale,
            )
        ]
    return [issuer, subject]


def exchange(
    *,
    tenant_id: str,
    client_id: str,
    assertion: str,
    authority: str,
    scope: str = ARM_SCOPE,
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
        access = credential.get_token(scope)
    except ClientAuthenticationError as exc:
        message = str(exc.message or exc)
        if _undecided(exc, message):
            return ExchangeResult(
                ok=False,
                error_code=TOKEN_ENDPOINT_BUSY,
                error_message=message.splitlines()[0][:500] if message else "",
            )
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


def _undecided(exc: ClientAuthenticationError, message: str) -> bool:
    """Entra answered but did not decide: busy, throttling or failing (azure-identity raises
    ClientAuthenticationError for any error body, after its own retries). entra-docs
    reference-error-codes: "temporarily_unavailable - The server is temporarily too busy to
    handle the request. - Retry the request"; 5xx and 429 say the same by status."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status == 429 or status >= 500):
        return True
    return "'(temporarily_unavailable)" in message or "(server_error)" in message


def meaning(error_code: str) -> str:
    return _MEANINGS.get(refusal(error_code), "")
