"""API tokens: format, hashing, scopes, expiry, revocation, last use; the endpoints and the
management command; throttling per token and per user."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone
from rest_framework.settings import api_settings

from accounts.models import ApiToken
from accounts.tokens import (
    TOKEN_LENGTH,
    TokenInvalidError,
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
    token_generate,
    token_well_formed,
)
from identities.errors import PermissionDeniedError, PolicyViolationError
from identities.models import AuditEvent
from portal.logging import redact
from tests.api.conftest import TokenFactory

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/tokens/"


def test_tokens_have_a_scannable_prefix_and_a_checksum() -> None:
    raw = token_generate()
    assert re.fullmatch(r"wip_[0-9A-Za-z]{42}", raw)
    assert len(raw) == TOKEN_LENGTH
    assert token_well_formed(raw)
    flipped = raw[:10] + ("A" if raw[10] != "A" else "B") + raw[11:]
    assert not token_well_formed(flipped)
    assert redact(f"Authorization failed for {raw}") == "Authorization failed for [REDACTED]"


def test_only_the_hash_is_stored_and_the_audit_row_holds_no_secret(requester: Any) -> None:
    token, raw = api_token_create(user=requester, name="deploy", scopes=["read"], expires_at=None)

    assert token.hashed_secret == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    event = AuditEvent.objects.get(action="api_token.created")
    assert event.actor == requester
    assert event.data["prefix"] == raw[:12]
    assert raw not in str(event.data)
    assert token.hashed_secret not in str(event.data)


def test_scopes_must_be_useful_to_the_user(requester: Any, auditor: Any) -> None:
    with pytest.raises(PolicyViolationError) as caught:
        api_token_create(user=requester, name="x", scopes=["approve"], expires_at=None)
    assert caught.value.violations[0].rule == "scope_not_allowed"
    with pytest.raises(PolicyViolationError):
        api_token_create(user=auditor, name="x", scopes=["request"], expires_at=None)
    with pytest.raises(PolicyViolationError):
        api_token_create(user=auditor, name="x", scopes=["admin"], expires_at=None)
    api_token_create(user=auditor, name="x", scopes=["read"], expires_at=None)


def test_authentication_refuses_unknown_expired_revoked_and_inactive(
    requester: Any, make_token: TokenFactory
) -> None:
    with pytest.raises(TokenInvalidError, match="malformed"):
        api_token_authenticate("wip_short")
    with pytest.raises(TokenInvalidError, match="not known"):
        api_token_authenticate(token_generate())
    with pytest.raises(TokenInvalidError, match="expired"):
        api_token_authenticate(make_token(requester, ["read"], expired=True))
    with pytest.raises(TokenInvalidError, match="revoked"):
        api_token_authenticate(make_token(requester, ["read"], revoked=True))
    raw = make_token(requester, ["read"])
    requester.is_active = False
    requester.save()
    with pytest.raises(TokenInvalidError, match="inactive"):
        api_token_authenticate(raw)


def test_last_use_is_recorded_at_most_once_a_minute(
    requester: Any, make_token: TokenFactory, token_client: Any
) -> None:
    raw = make_token(requester, ["read"])
    client = token_client(raw)

    client.get("/api/v1/me/")
    first = ApiToken.objects.get().last_used_at
    client.get("/api/v1/me/")
    assert ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    client.get("/api/v1/me/")
    assert ApiToken.objects.get().last_used_at > first  # type: ignore[operator]


def test_a_bad_token_is_a_401_problem_with_a_bearer_challenge(
    requester: Any, make_token: TokenFactory, token_client: Any
) -> None:
    response = token_client(make_token(requester, ["read"], expired=True)).get(
        "/api/v1/identity-requests/"
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["detail"] == "The token has expired."


def test_anonymous_callers_are_told_to_authenticate(api_client: Any, db: None) -> None:
    response = api_client.get("/api/v1/identity-requests/")
    assert response.status_code == 401
    assert response.json()["type"].endswith(":unauthenticated")


def test_a_token_without_the_scope_is_refused_and_told_which(
    requester: Any, make_token: TokenFactory, token_client: Any, cluster: Any
) -> None:
    response = token_client(make_token(requester, ["read"])).post(
        "/api/v1/identity-requests/", {}, format="json"
    )
    assert response.status_code == 403
    assert "needs 'request'" in response.json()["detail"]


def test_me_reports_roles_teams_and_the_tokens_scopes(
    requester: Any, make_token: TokenFactory, token_client: Any
) -> None:
    body = token_client(make_token(requester, ["request"])).get("/api/v1/me/").json()
    assert body["username"] == "alice"
    assert body["roles"] == ["requesters"]
    assert body["teams"] == ["payments"]
    assert body["token"]["scopes"] == ["request"]


def test_a_signed_in_user_creates_a_token_shown_once(requester: Any, client_for: Any) -> None:
    client = client_for(requester)

    response = client.post(
        TOKENS, {"name": "deploy", "scopes": ["read", "request"], "expires_in_days": 30}
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert token_well_formed(body["token"])
    assert body["scopes"] == ["read", "request"]
    listed = client.get(TOKENS).json()["results"]
    assert [row["prefix"] for row in listed] == [body["prefix"]]
    assert "token" not in listed[0]
    assert api_token_authenticate(body["token"]).user == requester


def test_a_token_cannot_mint_or_revoke_tokens(
    requester: Any, make_token: TokenFactory, token_client: Any
) -> None:
    raw = make_token(requester, ["read", "request"])
    client = token_client(raw)

    created = client.post(TOKENS, {"name": "escalate", "scopes": ["read"]})
    revoked = client.post(f"{TOKENS}{ApiToken.objects.get().pk}/revoke/")

    assert created.status_code == revoked.status_code == 403
    assert "sign in" in created.json()["detail"]


def test_creating_a_token_with_a_scope_the_role_lacks_names_the_field(
    requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(TOKENS, {"name": "x", "scopes": ["approve"]})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "scopes"


def test_revocation_takes_effect_at_once_and_is_audited_once(
    requester: Any, make_token: TokenFactory, client_for: Any, token_client: Any
) -> None:
    raw = make_token(requester, ["read"])
    token = ApiToken.objects.get()
    client = client_for(requester)

    first = client.post(f"{TOKENS}{token.pk}/revoke/")
    again = client.post(f"{TOKENS}{token.pk}/revoke/")

    assert first.status_code == again.status_code == 200
    assert first.json()["is_active"] is False
    assert AuditEvent.objects.filter(action="api_token.revoked").count() == 1
    assert token_client(raw).get("/api/v1/me/").status_code == 401


def test_someone_elses_token_cannot_be_revoked(
    requester: Any, outsider: Any, make_token: TokenFactory, client_for: Any
) -> None:
    make_token(requester, ["read"])
    token = ApiToken.objects.get()
    response = client_for(outsider).post(f"{TOKENS}{token.pk}/revoke/")
    assert response.status_code == 404
    with pytest.raises(PermissionDeniedError):
        api_token_revoke(token=token, actor=outsider)


def test_the_management_command_prints_a_working_token_once(requester: Any) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_token",
        "alice",
        "--scopes",
        "read,request",
        "--expires-in",
        "30d",
        stdout=out,
        stderr=err,
    )

    raw = out.getvalue().strip()
    token = api_token_authenticate(raw)
    assert token.scopes == ["read", "request"]
    assert token.expires_at is not None
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert raw not in err.getvalue()
    assert "shown once" in err.getvalue()


def test_the_management_command_explains_its_errors(requester: Any) -> None:
    with pytest.raises(CommandError, match="No user named"):
        call_command("create_api_token", "nobody")
    with pytest.raises(CommandError, match="not a duration"):
        call_command("create_api_token", "alice", "--expires-in", "soon")
    with pytest.raises(CommandError, match="not an approver"):
        call_command("create_api_token", "alice", "--scopes", "approve")


def _rates(**rates: str) -> Any:
    return override_settings(REST_FRAMEWORK={**_rest_framework(), "DEFAULT_THROTTLE_RATES": rates})


def _rest_framework() -> dict[str, Any]:
    from django.conf import settings

    return dict(settings.REST_FRAMEWORK)


def test_tokens_are_throttled_per_token_with_retry_after(
    requester: Any, make_token: TokenFactory, token_client: Any
) -> None:
    first = token_client(make_token(requester, ["read"]))
    second = token_client(make_token(requester, ["read"]))
    with _rates(token="2/min", user="100/min", anon="100/min"):
        assert api_settings.DEFAULT_THROTTLE_RATES["token"] == "2/min"
        statuses = [first.get("/api/v1/me/").status_code for _ in range(3)]
        other = second.get("/api/v1/me/")

    assert statuses == [200, 200, 429]
    assert other.status_code == 200, "the limit is per token"


def test_a_user_is_throttled_across_their_session_and_tokens(
    requester: Any, make_token: TokenFactory, token_client: Any, client_for: Any
) -> None:
    with _rates(token="100/min", user="2/min", anon="100/min"):
        client_for(requester).get("/api/v1/me/")
        token_client(make_token(requester, ["read"])).get("/api/v1/me/")
        response = client_for(requester).get("/api/v1/me/")

    assert response.status_code == 429
    assert response["Content-Type"] == "application/problem+json"
    assert int(response["Retry-After"]) >= 1
