"""Proving the federation works before the team deploys.

Ask the cluster for a ServiceAccount token (TokenRequest, audience api://AzureADTokenExchange),
exchange it at Entra ID with azure-identity's ClientAssertionCredential for the identity's client
id, and record "works", "propagating" (a new FIC not yet visible to Entra), "inconclusive" (the
token endpoint could not be reached, so nothing was learned) or the AADSTS code with the
mismatch explained field by field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from identities.audit import audit_record
from identities.audit.actions import VERIFICATION_OUTCOME_ACTIONS
from identities.handover_spec import handover_spec_for
from identities.manifests import render_service_account
from identities.models import ChildStatus, FederatedCredential, IdentityRequest
from provisioning.azure import AzureGateway, FicState, get_gateway
from provisioning.errors import GatewayError, TransientError
from provisioning.federation import (
    NOT_FOUND_REFUSALS,
    TOKEN_ENDPOINT_BUSY,
    TOKEN_ENDPOINT_UNREACHABLE,
    ExchangeResult,
    Mismatch,
    exchange,
    explain_mismatch,
    meaning,
    name_the_strings,
    refusal,
    token_claims,
)
from provisioning.kubernetes import KubernetesGateway, connection_from_kubeconfig
from provisioning.models import Verification, VerificationOutcome

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    outcome: str
    summary: str
    error_code: str = ""
    mismatches: tuple[Mismatch, ...] = ()
    token_expires_at: object = None


def _request_fic(identity_request: IdentityRequest) -> FederatedCredential | None:
    identity = identity_request.identity
    if identity is None:
        return None
    return (
        identity.federated_credentials.filter(
            namespace=identity_request.namespace,
            service_account=identity_request.service_account,
        )
        .exclude(status=ChildStatus.REMOVED)
        .first()
    )


def _azure_fic(gateway: AzureGateway, fic: FederatedCredential) -> FicState | None:
    identity = fic.identity
    for state in gateway.list_fics(
        subscription_id=identity.subscription_id,
        resource_group=identity.resource_group,
        identity_name=identity.name,
    ):
        if state.name.lower() == fic.name.lower():
            return state
    return None


def _within_propagation_window(fic: FederatedCredential) -> bool:
    window = timedelta(seconds=settings.VERIFY_PROPAGATION_WINDOW_SECONDS)
    return timezone.now() - fic.updated_at < window


def run_check(identity_request: IdentityRequest, fic: FederatedCredential) -> Check:
    """One attempt: token from the cluster, exchange at Entra, explanation on failure."""
    gateway = get_gateway()
    identity = fic.identity
    cluster = identity_request.cluster
    try:
        kubeconfig = gateway.cluster_kubeconfig(
            subscription_id=cluster.subscription_id,
            resource_group=cluster.aks_resource_group,
            name=cluster.name,
        )
        with KubernetesGateway(connection_from_kubeconfig(kubeconfig, azure=gateway)) as kube:
            if cluster.apply_service_account:
                kube.apply_service_account(
                    render_service_account(handover_spec_for(identity_request))
                )
            sa_token = kube.request_token(
                namespace=fic.namespace, service_account=fic.service_account
            )
    except GatewayError as error:
        if error.status == 404:
            return Check(
                VerificationOutcome.FAILED,
                f"The ServiceAccount {fic.namespace}/{fic.service_account} does not exist on "
                f"cluster {cluster.name}: apply the ServiceAccount manifest first (or let the "
                "portal apply it for this cluster), then verify again.",
                error_code="ServiceAccountNotFound",
            )
        if isinstance(error, TransientError):
            # The cluster did not answer (in time): nothing was learned about the federation.
            return Check(
                VerificationOutcome.INCONCLUSIVE,
                f"Could not get a ServiceAccount token from cluster {cluster.name} "
                f"({error.describe()}). The exchange did not happen, so this says nothing about "
                "the federation itself: verify again later.",
                error_code="ClusterUnreachable",
            )
        return Check(
            VerificationOutcome.FAILED,
            f"Could not get a ServiceAccount token from cluster {cluster.name}: {error.describe()}",
            error_code=error.code or "ClusterUnreachable",
        )

    result: ExchangeResult = exchange(
        tenant_id=identity.tenant_id,
        client_id=identity.client_id,
        assertion=sa_token.token,
        authority=gateway.authority,
        scope=gateway.arm_scope,
        connection_verify=gateway.connection_verify,
        connection_timeout=settings.AZURE_HTTP_CONNECT_TIMEOUT,
        read_timeout=settings.AZURE_HTTP_READ_TIMEOUT,
    )
    if result.ok:
        return Check(
            VerificationOutcome.WORKS,
            f"Federation works: a token of {fic.subject} was exchanged for an Azure access "
            f"token for client id {identity.client_id}.",
            token_expires_at=result.expires_at,
        )
    if result.error_code == TOKEN_ENDPOINT_UNREACHABLE:
        return Check(
            VerificationOutcome.INCONCLUSIVE,
            f"Could not reach Entra ID's token endpoint at {gateway.authority} "
            f"({result.error_message}). The exchange did not happen, so this says nothing about "
            "the federation itself: verify again later.",
            error_code=result.error_code,
        )
    if result.error_code == TOKEN_ENDPOINT_BUSY:
        return Check(
            VerificationOutcome.INCONCLUSIVE,
            f"Entra ID's token endpoint at {gateway.authority} answered but did not decide "
            f"(busy, throttling or failing: {result.error_message}). This says nothing about "
            "the federation itself: verify again later.",
            error_code=result.error_code,
        )
    claims = token_claims(sa_token.token)
    mismatches = explain_mismatch(claims, _azure_fic(gateway, fic))
    refused = refusal(result.error_code)
    if refused in NOT_FOUND_REFUSALS and not mismatches:
        # ARM's copy of the credential matches the token, yet Entra finds no record: every
        # "not found" form (70021, 700211, 700213, 7002138) is what a credential that has not
        # propagated yet answers. Past the window, name the strings to compare.
        if _within_propagation_window(fic):
            return Check(
                VerificationOutcome.PROPAGATING,
                "The federated credential matches the token but Entra ID does not know it yet; "
                "new credentials can take a few minutes to propagate. The portal keeps "
                "checking.",
                error_code=result.error_code,
            )
        mismatches = name_the_strings(
            refused,
            claims,
            cluster_issuer=cluster.oidc_issuer_url,
            expected_subject=f"system:serviceaccount:{fic.namespace}:{fic.service_account}",
            audience=fic.audience,
        )
    summary = meaning(result.error_code) or result.error_message
    if mismatches:
        summary += " " + " ".join(
            f"{m.field}: expected {m.expected!r}, the token presents {m.presented!r}."
            for m in mismatches
        )
    return Check(
        VerificationOutcome.FAILED,
        summary.strip(),
        error_code=result.error_code,
        mismatches=tuple(mismatches),
    )


@transaction.atomic
def _record(
    *,
    identity_request: IdentityRequest,
    fic: FederatedCredential,
    check: Check,
    verification_id: int | None,
) -> Verification:
    fields = {
        "outcome": check.outcome,
        "error_code": check.error_code,
        "summary": check.summary,
        "mismatches": [m.as_dict() for m in check.mismatches],
        "token_expires_at": check.token_expires_at,
    }
    verification = (
        Verification.objects.select_for_update().filter(pk=verification_id).first()
        if verification_id
        else None
    )
    if verification is None:
        verification = Verification.objects.create(
            identity_request=identity_request, federated_credential=fic, **fields
        )
    else:
        for name, value in fields.items():
            setattr(verification, name, value)
        verification.attempts += 1
        verification.save()
    # Audit the final outcome of a run, not every propagation poll.
    if check.outcome != VerificationOutcome.PROPAGATING:
        audit_record(
            actor=None,
            action=VERIFICATION_OUTCOME_ACTIONS[check.outcome],
            identity_request=identity_request,
            identity=fic.identity,
            data={
                "verification_id": verification.pk,
                "error_code": check.error_code,
                "summary": check.summary,
                "mismatches": fields["mismatches"],
                "attempts": verification.attempts,
            },
        )
    return verification


def identity_request_verify(
    *, identity_request_id: int, verification_id: int | None = None
) -> Verification | None:
    """Run one verification attempt and record it; None when there is nothing to verify."""
    identity_request = (
        IdentityRequest.objects.select_related("identity", "cluster")
        .filter(pk=identity_request_id)
        .first()
    )
    if identity_request is None:
        return None
    fic = _request_fic(identity_request)
    if fic is None:
        return None
    check = run_check(identity_request, fic)
    logger.info("verification of request %s: %s", identity_request.pk, check.outcome)
    return _record(
        identity_request=identity_request, fic=fic, check=check, verification_id=verification_id
    )
