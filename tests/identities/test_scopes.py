"""The one scope type: parsed with azure-mgmt-core's grammar, one spelling, refusals by rule."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identities.policy import RoleDraft, evaluate_request
from identities.scopes import Scope, ScopeError, canonical_scope, parse_scope
from identities.validators import SCOPE_RESOURCE, SCOPE_RESOURCE_GROUP, SCOPE_SUBSCRIPTION
from tests.identities.policy_support import SUBSCRIPTION, VAULT, make_context, make_draft

ALLOWED = [SUBSCRIPTION, "0f0e0d0c-0b0a-4909-8807-060504030201"]

names = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
group_names = st.text(string.ascii_letters + string.digits + "-_()", min_size=1, max_size=20)
namespaces = st.sampled_from(["Microsoft.KeyVault", "microsoft.storage", "MICROSOFT.ServiceBus"])
casings = st.sampled_from([str.lower, str.upper, str.title, lambda s: s])


@st.composite
def typed_scopes(draw: st.DrawFn) -> str:
    """A scope under an allowed subscription as someone might type it: any casing of the fixed
    segments and of the subscription id."""
    case = draw(casings)
    scope = f"/{case('subscriptions')}/{draw(casings)(draw(st.sampled_from(ALLOWED)))}"
    level = draw(st.integers(0, 2))
    if level >= 1:
        scope += f"/{draw(casings)('resourceGroups')}/{draw(group_names)}"
    if level == 2:
        scope += f"/{draw(casings)('providers')}/{draw(namespaces)}/{draw(names)}/{draw(names)}"
        for _ in range(draw(st.integers(0, 2))):
            scope += f"/{draw(names)}/{draw(names)}"
    return scope


@settings(max_examples=300, deadline=None)
@given(typed=typed_scopes())
def test_every_accepted_scope_is_canonical_round_trips_and_is_under_an_allowed_subscription(
    typed: str,
) -> None:
    scope = parse_scope(typed)

    assert scope.id == parse_scope(scope.id).id  # canonical is a fixed point
    assert scope.key() == typed.lower()  # only the spelling changed, never the meaning
    assert scope.subscription_id in ALLOWED
    assert "/subscriptions/" in scope.id
    if scope.resource_group is not None:
        assert "/resourceGroups/" in scope.id
    if scope.namespace is not None:
        assert "/providers/" in scope.id


HOSTILE = ["/..", "/.", "%", "%2e", "?", "?a=b", "#", "#x", "\\", "\x00", "\x7f", "\n", "\t", " "]


@settings(max_examples=300, deadline=None)
@given(typed=typed_scopes(), hostile=st.sampled_from(HOSTILE), at=st.integers(min_value=0))
def test_a_dot_segment_percent_query_fragment_or_control_character_is_always_refused(
    typed: str, hostile: str, at: int
) -> None:
    candidates = [typed + hostile]
    if "/" not in hostile:
        cut = at % (len(typed) + 1)
        candidates.append(typed[:cut] + hostile + typed[cut:])
    for bad in candidates:
        with pytest.raises(ScopeError):
            parse_scope(bad)


def test_the_fixed_segments_get_arms_casing_and_names_keep_theirs() -> None:
    typed = (
        f"/SUBSCRIPTIONS/{SUBSCRIPTION.upper()}/resourcegroups/RG-Payments"
        "/PROVIDERS/Microsoft.Storage/storageAccounts/StPayments/blobServices/default"
        "/containers/Invoices"
    )
    scope = parse_scope(typed)
    assert scope.id == (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/RG-Payments"
        "/providers/Microsoft.Storage/storageAccounts/StPayments/blobServices/default"
        "/containers/Invoices"
    )
    assert scope.level == SCOPE_RESOURCE
    assert scope.resource_type == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert scope.name == "Invoices"
    assert scope.resource_group_id == f"/subscriptions/{SUBSCRIPTION}/resourceGroups/RG-Payments"
    assert canonical_scope(typed) == scope.id


def test_levels() -> None:
    assert parse_scope(f"/subscriptions/{SUBSCRIPTION}").level == SCOPE_SUBSCRIPTION
    group = parse_scope(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg")
    assert group.level == SCOPE_RESOURCE_GROUP
    vault = parse_scope(VAULT)
    assert vault.level == SCOPE_RESOURCE
    assert vault.is_within(group) is False  # rg-payments, not rg
    assert vault.is_within(parse_scope(vault.resource_group_id or "")) is True
    assert vault.is_within(Scope(SUBSCRIPTION)) is True


@pytest.mark.parametrize(
    ("typed", "rule"),
    [
        ("", "required"),
        ("/subscriptions/not-a-guid", "malformed_scope"),
        (f"/subscriptions/{SUBSCRIPTION}/", "malformed_scope"),
        (f"/subscriptions/{SUBSCRIPTION}//resourceGroups/rg", "malformed_scope"),
        (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults",
            "malformed_scope",
        ),
        (
            f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.KeyVault/vaults/kv",
            "malformed_scope",
        ),
        (VAULT + "/providers/Microsoft.Authorization/locks/lock", "malformed_scope"),
        ("/providers/Microsoft.Management/managementGroups/mg", "malformed_scope"),
        (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/NotANamespace/t/n",
            "malformed_scope",
        ),
        (VAULT.replace("kv-payments", "kv-p\u0430yments"), "scope_non_ascii"),  # Cyrillic a
        (VAULT + "/../..", "scope_dot_segment"),
        (VAULT + "?x", "scope_forbidden_character"),
        (VAULT + "%2F", "scope_percent_encoding"),
        (VAULT + "/s" * 1000, "scope_too_long"),
    ],
)
def test_each_refusal_names_its_rule(typed: str, rule: str) -> None:
    with pytest.raises(ScopeError) as refused:
        parse_scope(typed)
    assert refused.value.rule == rule


def test_the_policy_refuses_a_mixed_case_duplicate_of_the_same_scope() -> None:
    shouting = VAULT.replace("/subscriptions/", "/SUBSCRIPTIONS/").replace(
        "/resourceGroups/", "/RESOURCEGROUPS/"
    )
    draft = make_draft(
        roles=(
            RoleDraft("Key Vault Secrets User", VAULT),
            RoleDraft("Key Vault Secrets User", shouting),
        )
    )
    violations = {(v.field, v.rule) for v in evaluate_request(draft, make_context()).violations}
    assert ("roles[1]", "duplicate_role_scope") in violations


def test_known_namespaces_and_types_get_their_documented_casing() -> None:
    typed = (
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg/providers/microsoft.keyvault/VAULTS/kv"
    )
    assert parse_scope(typed).id == (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
    )


def test_a_scope_parsed_again_is_the_same_value_and_a_refused_one_is_refused_again() -> None:
    # parse_scope keeps what it parsed (an approval of k roles parses each scope several
    # times): the value is immutable, so sharing it changes nothing a caller can see.
    first = parse_scope(VAULT.lower().replace("/resourcegroups/", "/resourceGroups/"))
    again = parse_scope(VAULT.lower().replace("/resourcegroups/", "/resourceGroups/"))
    assert again == first and again.id == first.id == canonical_scope(VAULT)
    with pytest.raises(AttributeError):
        first.subscription_id = "0f0e0d0c-0b0a-4909-8807-060504030201"  # type: ignore[misc]
    # Only parsed values are kept: a refusal is worked out, and raised, every time.
    for _ in range(2):
        with pytest.raises(ScopeError) as refused:
            parse_scope(VAULT + "/../..")
        assert refused.value.rule == "scope_dot_segment"
