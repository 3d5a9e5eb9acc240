"""The Django admin: configuration through audited services, the workflow read-only."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from identities.models import AuditEvent, IdentityRequest
from tests.identities.conftest import last_audit

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_for(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_admin_pages_render(admin_client_for: Client, approved_request: IdentityRequest) -> None:
    for url in (
        "/admin/identities/cluster/",
        "/admin/identities/team/",
        "/admin/identities/namespaceownership/",
        "/admin/identities/catalogrole/",
        "/admin/identities/identityrequest/",
        "/admin/identities/identity/",
        "/admin/identities/auditevent/",
        f"/admin/identities/identityrequest/{approved_request.pk}/change/",
        f"/admin/identities/auditevent/{last_audit().pk}/change/",
    ):
        assert admin_client_for.get(url).status_code == 200, url


def test_adding_a_namespace_in_the_admin_is_audited(
    admin_client_for: Client, cluster: Any, team: Any, admin_user: Any
) -> None:
    response = admin_client_for.post(
        "/admin/identities/namespaceownership/add/",
        {"cluster": cluster.pk, "namespace": "payments-batch", "team": team.pk},
    )
    assert response.status_code == 302
    event = last_audit()
    assert (event.action, event.actor) == ("namespaceownership.created", admin_user)


def test_the_admin_refuses_a_reserved_namespace(
    admin_client_for: Client, cluster: Any, team: Any
) -> None:
    response = admin_client_for.post(
        "/admin/identities/namespaceownership/add/",
        {"cluster": cluster.pk, "namespace": "kube-system", "team": team.pk},
    )
    assert response.status_code == 200
    assert "reserved" in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_audit_events_cannot_be_changed_or_deleted_in_the_admin(
    admin_client_for: Client, approved_request: IdentityRequest
) -> None:
    event = last_audit()
    assert (
        admin_client_for.post(f"/admin/identities/auditevent/{event.pk}/delete/").status_code == 403
    )
    assert admin_client_for.get("/admin/identities/auditevent/add/").status_code == 403
