"""Database constraints: the last line of defence behind the services."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, transaction

from identities.models import FederatedCredential, Identity, IdentityRequest
from tests.support.people import FederatedCredentialFactory, IdentityFactory

pytestmark = pytest.mark.django_db


def _refused(create: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def test_a_service_account_is_federated_to_at_most_one_live_identity(cluster: Any) -> None:
    first = FederatedCredentialFactory(identity__cluster=cluster, service_account="api")
    _refused(
        lambda: FederatedCredentialFactory(
            identity__cluster=cluster, service_account="api", issuer=first.issuer
        )
    )
    FederatedCredential.objects.filter(pk=first.pk).update(status="removed")
    FederatedCredentialFactory(
        identity__cluster=cluster, service_account="api", issuer=first.issuer
    )


def test_a_decommissioned_identity_frees_its_name(team: Any, cluster: Any) -> None:
    first = IdentityFactory(team=team, cluster=cluster, name="aks-test-payments-api")
    _refused(lambda: IdentityFactory(team=team, cluster=cluster, name="AKS-TEST-payments-api"))
    Identity.objects.filter(pk=first.pk).update(status="decommissioned")
    IdentityFactory(team=team, cluster=cluster, name="aks-test-payments-api")


def test_statuses_outside_the_choices_are_refused(team: Any, cluster: Any) -> None:
    identity = IdentityFactory(team=team, cluster=cluster)
    _refused(lambda: Identity.objects.filter(pk=identity.pk).update(status="exploded"))


def test_a_request_needs_a_service_account_unless_it_decommissions(
    requester: Any, team: Any, cluster: Any
) -> None:
    _refused(
        lambda: IdentityRequest.objects.create(
            app_name="x", team=team, cluster=cluster, justification="x", requester=requester
        )
    )


def test_add_and_decommission_requests_need_a_target_identity(
    requester: Any, team: Any, cluster: Any
) -> None:
    _refused(
        lambda: IdentityRequest.objects.create(
            kind="decommission",
            app_name="x",
            team=team,
            cluster=cluster,
            justification="x",
            requester=requester,
        )
    )
