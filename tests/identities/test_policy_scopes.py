"""The policy refuses every scope that would mean something else to Azure (pure: no database)."""

from __future__ import annotations

import pytest

from identities.policy import PolicyResult, RoleDraft, evaluate_request
from identities.scopes import ScopeError, parse_scope
from identities.validators import scope_problem
from tests.identities.policy_support import VAULT, make_context, make_draft
from tests.support.scope_attacks import ATTACKS


def rules(result: PolicyResult) -> set[tuple[str, str]]:
    return {(v.field, v.rule) for v in result.violations}


@pytest.mark.parametrize(("scope", "rule"), ATTACKS)
def test_the_policy_refuses_the_scope_naming_the_field_and_the_rule(scope: str, rule: str) -> None:
    result = evaluate_request(
        make_draft(roles=(RoleDraft("Key Vault Secrets User", scope),)), make_context()
    )

    assert ("roles[0].scope", rule) in rules(result)
    assert not result.ok
    with pytest.raises(ScopeError):
        parse_scope(scope)
    assert scope_problem(scope) is not None


@pytest.mark.parametrize(("scope", "rule"), ATTACKS)
def test_an_exception_request_does_not_turn_the_refusal_into_a_warning(
    scope: str, rule: str
) -> None:
    draft = make_draft(
        roles=(RoleDraft("Key Vault Secrets User", scope),),
        is_exception=True,
        justification="An exception, with a justification long enough to count for one.",
    )
    assert ("roles[0].scope", rule) in rules(evaluate_request(draft, make_context()))


def test_a_refusal_of_a_very_long_scope_quotes_only_its_start() -> None:
    scope = VAULT + "/x" * 1000
    [violation] = evaluate_request(
        make_draft(roles=(RoleDraft("Key Vault Secrets User", scope),)), make_context()
    ).violations
    assert len(violation.message) < 400


def test_a_plain_vault_scope_is_still_accepted() -> None:
    assert scope_problem(VAULT) is None
    assert parse_scope(VAULT).id == VAULT
    # A dot inside a name is fine: only whole '.' and '..' segments are path operations.
    assert scope_problem(VAULT + "/secrets/my.secret..v2") is None
    assert evaluate_request(make_draft(), make_context()).ok
