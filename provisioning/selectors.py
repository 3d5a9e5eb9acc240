"""Reads of provisioning progress and verification results (callers pass visible objects)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from identities.models import ApprovalDecision, IdentityRequest
from provisioning.models import ProvisioningStep, Verification


def request_steps(identity_request: IdentityRequest) -> list[ProvisioningStep]:
    """The request's steps in plan order (the live progress view)."""
    return list(
        ProvisioningStep.objects.filter(identity_request=identity_request).order_by(
            "position", "id"
        )
    )


def request_verifications(identity_request: IdentityRequest) -> QuerySet[Verification]:
    """Verification results of the request, newest first."""
    return Verification.objects.filter(identity_request=identity_request).select_related(
        "federated_credential"
    )


def request_approved_at(identity_request: IdentityRequest) -> datetime | None:
    """When the approval that released the request was given (its newest approval): a retried
    request counts from it, so the approval-to-ready histogram shows what the team waited."""
    return (
        identity_request.approvals.filter(decision=ApprovalDecision.APPROVE)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
