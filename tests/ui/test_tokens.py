"""API tokens: created and shown once, listed by prefix, revoked; only one's own."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from accounts.models import ApiToken
from accounts.tokens import api_token_create
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


def test_a_new_token_is_shown_once_and_only_its_hash_is_kept(
    client_for: ClientFor, requester: Any
) -> None:
    client = client_for(requester)

    created = client.post(
        reverse("api_tokens"), {"name": "ci", "scopes": ["read", "request"], "lifetime": "30d"}
    )
    listed = client.get(reverse("api_tokens"))

    plaintext = created.context["plaintext"]
    assert plaintext.startswith("wip_")
    assert plaintext in created.content.decode()
    assert created["Cache-Control"] == "no-store"
    token = ApiToken.objects.get()
    assert token.scopes == ["read", "request"]
    assert token.expires_at is not None
    assert plaintext not in listed.content.decode()
    assert token.prefix in listed.content.decode()


def test_only_scopes_the_users_roles_can_use_are_offered(
    client_for: ClientFor, requester: Any, approver: Any
) -> None:
    requester_scopes = client_for(requester).get(reverse("api_tokens")).context["form"]
    approver_scopes = client_for(approver).get(reverse("api_tokens")).context["form"]

    assert [c[0] for c in requester_scopes.fields["scopes"].choices] == ["read", "request"]
    assert [c[0] for c in approver_scopes.fields["scopes"].choices] == ["read", "approve"]


def test_a_scope_not_offered_is_refused(client_for: ClientFor, requester: Any) -> None:
    response = client_for(requester).post(
        reverse("api_tokens"), {"name": "ci", "scopes": ["approve"], "lifetime": "30d"}
    )

    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_revoking_a_token(client_for: ClientFor, requester: Any) -> None:
    token, _ = api_token_create(user=requester, name="ci", scopes=["read"], expires_at=None)

    response = client_for(requester).post(reverse("api_token_revoke", args=[token.pk]), follow=True)

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "revoked" in response.content.decode()


def test_someone_elses_token_is_not_found(
    client_for: ClientFor, requester: Any, outsider: Any
) -> None:
    token, _ = api_token_create(user=outsider, name="theirs", scopes=["read"], expires_at=None)

    response = client_for(requester).post(reverse("api_token_revoke", args=[token.pk]))

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
