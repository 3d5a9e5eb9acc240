"""Scopes that would mean something else to Azure are a 400 naming the field and the rule."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import new_request_body
from tests.support.scope_attacks import ATTACKS

pytestmark = pytest.mark.django_db

LIST = "/api/v1/identity-requests/"
# DRF's CharField refuses these two before the policy sees them, under its own rule names.
SERIALIZER_RULES = {"scope_too_long": "max_length"}


@pytest.mark.parametrize(("scope", "rule"), ATTACKS)
def test_the_api_answers_400_naming_the_field_and_the_rule_and_files_nothing(
    scope: str, rule: str, requester: Any, cluster: Any, catalog: Any, client_for: Any
) -> None:
    audit_rows = AuditEvent.objects.count()
    body = new_request_body(roles=[{"role": "Key Vault Secrets User", "scope": scope}])

    response = client_for(requester).post(LIST, body, format="json")

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    errors = {(e["field"], e["rule"]) for e in response.json()["errors"]}
    if "\x00" in scope:
        rule = "null_characters_not_allowed"
    assert ("roles[0].scope", SERIALIZER_RULES.get(rule, rule)) in errors
    assert not IdentityRequest.objects.exists()
    assert AuditEvent.objects.count() == audit_rows
