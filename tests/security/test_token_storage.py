"""API tokens are stored hashed: tokens made through every real code path (the service, the web
UI, the API with an Idempotency-Key, the management command) and then used and revoked leave no
plaintext in a dump of the database (`dumpdata`, every table's rows as text, the decoded
sessions), and no hash found in the dump works as a bearer token."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tokens import api_token_create, token_hash, token_well_formed

pytestmark = [pytest.mark.security, pytest.mark.django_db]


def tokens_through_every_path(requester: Any, approver: Any) -> dict[str, str]:
    """One plaintext token per way of making one, each used once; the UI's one revoked."""
    made: dict[str, str] = {}
    _row, made["service"] = api_token_create(
        user=requester,
        name="service",
        scopes=["read"],
        expires_at=timezone.now() + timedelta(days=1),
    )

    browser = Client()
    browser.force_login(requester)
    page = browser.post(
        reverse("api_tokens"), {"name": "ui", "scopes": ["read", "request"], "lifetime": "30d"}
    )
    made["ui"] = page.context["plaintext"]

    api = APIClient()
    api.force_login(approver)
    body = {"name": "api", "scopes": ["read", "approve"], "expires_in_days": 7}
    created = api.post("/api/v1/tokens/", body, format="json", HTTP_IDEMPOTENCY_KEY="mint-1")
    replayed = api.post("/api/v1/tokens/", body, format="json", HTTP_IDEMPOTENCY_KEY="mint-1")
    assert created.status_code == replayed.status_code == 201
    assert replayed["Idempotent-Replayed"] == "true"
    assert replayed.json()["id"] == created.json()["id"]
    assert replayed.json()["token"] == "", "a replay never carries the secret"
    made["api"] = created.json()["token"]

    out = io.StringIO()
    call_command("create_api_token", "alice", "--name", "cli", stdout=out, stderr=io.StringIO())
    made["command"] = out.getvalue().strip()

    for raw in made.values():
        assert token_well_formed(raw), raw
        used = APIClient()
        used.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert used.get("/api/v1/me/").status_code == 200
    ui_token = ApiToken.objects.get(name="ui")
    assert browser.post(reverse("api_token_revoke", args=[ui_token.pk])).status_code == 302
    return made


def database_dump() -> str:
    """dumpdata of every app, every table's rows as text, and every session decoded."""
    parts = []
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    parts.append(out.getvalue())
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            quoted = connection.ops.quote_name(table)
            if connection.vendor == "postgresql":
                cursor.execute(f"SELECT t::text FROM {quoted} AS t")  # noqa: S608 - our tables
            else:
                cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608 - our tables
            parts.extend(repr(row) for row in cursor.fetchall())
    parts.extend(json.dumps(session.get_decoded()) for session in Session.objects.all())
    return "\n".join(parts)


def test_a_database_dump_holds_no_usable_token(requester: Any, approver: Any) -> None:
    made = tokens_through_every_path(requester, approver)

    dump = database_dump()

    for path, raw in made.items():
        body = raw.removeprefix("wip_")
        assert raw not in dump, f"the plaintext of the {path} token is in the database"
        assert body[:20] not in dump, f"the secret part of the {path} token is in the database"
        assert token_hash(raw) in dump, f"the dump lacks the {path} token's hash: not a dump?"
    assert re.findall(r"wip_[0-9A-Za-z]{42}", dump) == []

    hashes = set(ApiToken.objects.values_list("hashed_secret", flat=True))
    assert len(hashes) >= len(made)
    for digest in hashes:
        assert digest in dump
        for forged in (digest, f"wip_{digest}", f"wip_{digest[:42]}"):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
            assert client.get("/api/v1/me/").status_code == 401, forged
