"""Reads of provisioning progress and verification results (callers pass visible objects)."""

from __future__ import annotations

from django.db.models import QuerySet

from identities.models import IdentityRequest
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
