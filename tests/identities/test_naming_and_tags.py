"""Deterministic Azure names and the tags put on each identity."""

from __future__ import annotations

import pytest

from identities import naming
from identities.models import IdentityRequest
from identities.tags import MANAGED_BY, identity_tags


def test_names_read_like_the_request() -> None:
    assert (
        naming.uami_name(
            cluster="aks-prod",
            namespace="payments",
            app_name="checkout",
            service_account="checkout",
        )
        == "aks-prod-payments-checkout"
    )
    assert (
        naming.uami_name(
            cluster="aks-prod", namespace="payments", app_name="checkout", service_account="api"
        )
        == "aks-prod-payments-checkout-api"
    )
    assert (
        naming.fic_name(cluster="aks-prod", namespace="payments", service_account="checkout")
        == "aks-prod-payments-checkout"
    )


def test_characters_azure_refuses_are_replaced_and_a_stable_hash_keeps_names_distinct() -> None:
    dotted = naming.fic_name(cluster="aks", namespace="payments", service_account="api.v1")
    dashed = naming.fic_name(cluster="aks", namespace="payments", service_account="api-v1")
    assert (
        dotted.startswith("aks-payments-api-v1-") and len(dotted) == len("aks-payments-api-v1-") + 8
    )
    assert dashed == "aks-payments-api-v1"
    assert dotted != dashed
    assert dotted == naming.fic_name(cluster="aks", namespace="payments", service_account="api.v1")


def test_long_names_are_truncated_with_a_hash_suffix() -> None:
    long_sa = "s" * 253
    name = naming.fic_name(cluster="aks", namespace="payments", service_account=long_sa)
    assert len(name) == 120
    other = naming.fic_name(cluster="aks", namespace="payments", service_account="s" * 252)
    assert name != other


def test_the_subject_and_audience_are_what_the_token_carries() -> None:
    assert naming.fic_subject("payments", "checkout") == "system:serviceaccount:payments:checkout"
    assert naming.AUDIENCE == "api://AzureADTokenExchange"


@pytest.mark.django_db
def test_identity_tags_name_who_asked_and_who_approved(
    approved_request: IdentityRequest,
) -> None:
    tags = identity_tags(approved_request)
    assert tags == {
        "costCentre": "cc-4711",
        "environment": "dev",
        "app": "checkout",
        "team": "payments",
        "cluster": "aks-test",
        "namespace": "payments",
        "service-account": "checkout",
        "request-id": str(approved_request.pk),
        "requester": "alice",
        "approvers": "sam",
        "managed-by": MANAGED_BY,
    }
