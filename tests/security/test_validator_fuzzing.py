"""Hypothesis fuzzes every public function of identities/validators.py.

Each predicate must never raise and must agree with an independent restatement of its rule
(written here without the module's regular expressions); each Django validator must raise
ValidationError, and nothing else, exactly when its predicate says no; the ARM scope parser must
never raise and must give back the parts of any scope it was built from. The functions are found
by introspection: a new public function in the module without a fuzz test here fails
`test_every_validator_is_fuzzed`.

Budget: EXAMPLES cases per property (about 8 000 in all, a few seconds).
"""

from __future__ import annotations

import inspect
import string
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from identities import validators as v
from identities.scopes import Scope, ScopeError, parse_scope

pytestmark = pytest.mark.security

EXAMPLES = 400
FUZZED: set[str] = set()


def fuzzes(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Record that the decorated test fuzzes the validators `names`."""

    def register(test: Callable[..., None]) -> Callable[..., None]:
        FUZZED.update(names)
        return test

    return register


def public_functions() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(v, inspect.isfunction)
        if member.__module__ == v.__name__ and not name.startswith("_")
    }


def test_every_validator_is_fuzzed() -> None:
    assert len(public_functions()) >= 18
    assert sorted(public_functions() - FUZZED) == [], "validators without a fuzz test here"
    assert sorted(FUZZED - public_functions()) == [], "fuzz tests for validators that are gone"


# --- inputs: anything at all, and strings near each rule's edges ---------------------------------

LOWER_DNS = string.ascii_lowercase + string.digits + "-"
AZURE = string.ascii_letters + string.digits + "_-"
# Separators, whitespace, NUL, and unicode look-alikes (Arabic-Indic one, fullwidth 2 and A,
# dotted capital I, Kelvin sign, zero-width space).
NASTY = "-._ ()/\\:\t\n\x00\u00e9\u00c5\u00df\u0661\uff12\uff21\u0130\u212a\u200b"


def near(alphabet: str, max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Text mostly from `alphabet`, sometimes with a nasty character, any length up to max."""
    return st.one_of(
        st.text(alphabet=alphabet, min_size=min_size, max_size=max_size),
        st.text(alphabet=alphabet + NASTY, min_size=min_size, max_size=max_size),
        st.text(max_size=max_size),
    )


def at_length_edges(alphabet: str, *edges: int) -> st.SearchStrategy[str]:
    """Strings of exactly edge-1, edge and edge+1 characters."""
    lengths = sorted({n for edge in edges for n in (edge - 1, edge, edge + 1) if n >= 0})
    return st.sampled_from(lengths).flatmap(
        lambda n: st.text(alphabet=alphabet, min_size=n, max_size=n)
    )


def no_raise(function: Callable[[Any], Any], value: Any) -> Any:
    try:
        return function(value)
    except Exception as error:  # pragma: no cover - the assertion names the bug
        raise AssertionError(f"{function.__name__}({value!r}) raised {error!r}") from error


def refuses(validator: Callable[[Any], None], value: Any) -> bool:
    """True if `validator` raised ValidationError; any other exception fails the test."""
    try:
        validator(value)
    except ValidationError:
        return True
    except Exception as error:
        raise AssertionError(f"{validator.__name__}({value!r}) raised {error!r}") from error
    return False


# --- independent restatements of the rules (AZURE-FACTS.md §2; Kubernetes apimachinery) ----------


def dns_label_ok(value: str) -> bool:
    return (
        0 < len(value) <= 63
        and all(ch in LOWER_DNS for ch in value)
        and value[0] != "-"
        and value[-1] != "-"
    )


def dns_subdomain_ok(value: str) -> bool:
    parts = value.split(".")
    return 0 < len(value) <= 253 and all(
        part and all(ch in LOWER_DNS for ch in part) and part[0] != "-" and part[-1] != "-"
        for part in parts
    )


def azure_name_ok(value: str, low: int, high: int) -> bool:
    return low <= len(value) <= high and all(ch in AZURE for ch in value) and value[0] not in "_-"


def aks_cluster_ok(value: str) -> bool:
    return azure_name_ok(value, 1, 63) and value[-1] not in "_-"


def guid_ok(value: str) -> bool:
    groups = value.split("-")
    return [len(group) for group in groups] == [8, 4, 4, 4, 12] and all(
        ch in string.hexdigits for group in groups for ch in group
    )


def resource_group_ok(value: str) -> bool:
    return (
        0 < len(value) <= 90
        and all(ch.isalnum() or ch in "_().-" for ch in value)
        and not value.endswith(".")
    )


def tag_key_ok(value: str) -> bool:
    return (
        bool(value.strip())
        and len(value) <= 512
        and not set(value) & set("<>%&\\?/")
        and not any(unicodedata.category(ch) == "Cc" for ch in value)  # control characters
    )


# --- predicates -----------------------------------------------------------------------------------


@fuzzes("is_dns1123_label", "validate_dns1123_label")
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=st.one_of(near(LOWER_DNS, 70), at_length_edges("a1-", 63)))
def test_dns1123_labels(value: str) -> None:
    assert no_raise(v.is_dns1123_label, value) is dns_label_ok(value)
    assert refuses(v.validate_dns1123_label, value) is not dns_label_ok(value)


@fuzzes("is_reserved_namespace", "validate_namespace_grantable")
@settings(max_examples=EXAMPLES, deadline=None)
@given(
    value=st.one_of(
        near(LOWER_DNS, 30),
        st.sampled_from(sorted(v.RESERVED_NAMESPACES)),
        near(LOWER_DNS, 20).map(lambda rest: "kube-" + rest),
    )
)
def test_namespaces_the_platform_keeps_are_never_grantable(value: str) -> None:
    reserved = value in v.RESERVED_NAMESPACES or value.startswith("kube-")
    assert no_raise(v.is_reserved_namespace, value) is reserved
    assert refuses(v.validate_namespace_grantable, value) is (reserved or not dns_label_ok(value))


@fuzzes("is_dns1123_subdomain")
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=st.one_of(near(LOWER_DNS + ".", 260), at_length_edges("ab.", 253)))
def test_dns1123_subdomains(value: str) -> None:
    assert no_raise(v.is_dns1123_subdomain, value) is dns_subdomain_ok(value)


@fuzzes("is_uami_name")
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=st.one_of(near(AZURE, 135), at_length_edges("aZ9_-", 3, 128)))
def test_managed_identity_names(value: str) -> None:
    assert no_raise(v.is_uami_name, value) is azure_name_ok(value, 3, 128)


@fuzzes("is_fic_name")
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=st.one_of(near(AZURE, 125), at_length_edges("aZ9_-", 3, 120)))
def test_federated_credential_names(value: str) -> None:
    assert no_raise(v.is_fic_name, value) is azure_name_ok(value, 3, 120)


@fuzzes("is_aks_cluster_name", "validate_aks_cluster_name")
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=st.one_of(near(AZURE, 70), at_length_edges("aZ9_-", 1, 63)))
def test_aks_cluster_names(value: str) -> None:
    assert no_raise(v.is_aks_cluster_name, value) is aks_cluster_ok(value)
    assert refuses(v.validate_aks_cluster_name, value) is not aks_cluster_ok(value)


guid_like = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    near(string.hexdigits + "-", 40),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.uuids().map(lambda u: str(u) + "\n"),
)


@fuzzes("is_guid", "validate_guid")
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=guid_like)
def test_guids(value: str) -> None:
    assert no_raise(v.is_guid, value) is guid_ok(value)
    assert refuses(v.validate_guid, value) is not guid_ok(value)


@fuzzes("validate_guid_list")
@settings(max_examples=EXAMPLES, deadline=None)
@given(
    value=st.one_of(
        st.lists(guid_like, max_size=4),
        st.lists(st.one_of(st.integers(), st.none(), guid_like), max_size=3),
        guid_like,
        st.dictionaries(st.text(max_size=3), guid_like, max_size=2),
        st.none(),
        st.integers(),
    )
)
def test_guid_lists(value: Any) -> None:
    ok = isinstance(value, list) and all(isinstance(item, str) and guid_ok(item) for item in value)
    assert refuses(v.validate_guid_list, value) is not ok


@fuzzes("is_resource_group_name", "validate_resource_group")
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=st.one_of(near(AZURE + "().", 95), at_length_edges("a(.)-_", 90)))
def test_resource_group_names(value: str) -> None:
    assert no_raise(v.is_resource_group_name, value) is resource_group_ok(value)
    assert refuses(v.validate_resource_group, value) is not resource_group_ok(value)


@fuzzes("tag_key_problem")
@settings(max_examples=EXAMPLES, deadline=None)
@given(value=st.one_of(near("abcXYZ09-_ .:=<>%&\\?/\t\x00\x7f", 20), at_length_edges("k", 512)))
def test_tag_keys(value: str) -> None:
    problem = no_raise(v.tag_key_problem, value)
    assert (problem is None) is tag_key_ok(value)
    assert problem is None or (isinstance(problem, str) and problem)


@fuzzes("validate_oidc_issuer_url")
@settings(max_examples=EXAMPLES, deadline=None)
@given(
    value=st.one_of(
        near(string.ascii_lowercase + ":/.", 40).map(lambda rest: "https://" + rest),
        near(string.ascii_lowercase + ":/.", 40),
        at_length_edges("a/", 600 - len("https://")).map(lambda rest: "https://" + rest),
        st.sampled_from(["https://", " https://x/", "https://x/ ", "http://x/", "HTTPS://x/"]),
    )
)
def test_oidc_issuer_urls(value: str) -> None:
    ok = (
        not any(ch.isspace() for ch in value)
        and value.startswith("https://")
        and len("https://") < len(value) <= 600
    )
    assert refuses(v.validate_oidc_issuer_url, value) is not ok


@fuzzes("validate_string_list")
@settings(max_examples=EXAMPLES, deadline=None)
@given(
    value=st.one_of(
        st.lists(st.text(max_size=5), max_size=4),
        st.lists(st.one_of(st.text(max_size=3), st.integers(), st.none()), max_size=3),
        st.text(max_size=5),
        st.none(),
        st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    )
)
def test_string_lists(value: Any) -> None:
    ok = isinstance(value, list) and all(isinstance(item, str) and item for item in value)
    assert refuses(v.validate_string_list, value) is not ok


# --- the ARM scope parser (identities.scopes: the one scope type, built on these validators) ----


def parsed_or_none(value: str) -> Scope | None:
    """The scope, or None when parse_scope refuses it (it raises nothing else)."""
    try:
        return parse_scope(value)
    except ScopeError:
        return None


rg_name = st.text(alphabet=string.ascii_letters + string.digits + "_-()", min_size=1, max_size=20)
provider = st.sampled_from(["Microsoft.KeyVault", "Microsoft.Storage", "microsoft.web"])
# Names may hold dots, but a whole '.' or '..' segment is a path operation, refused by the parser;
# a `providers` segment below a resource would name an extension resource, refused too.
segment = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=12
).filter(lambda name: name not in {".", ".."} and name.lower() != "providers")


@st.composite
def arm_scopes(draw: st.DrawFn) -> tuple[str, tuple[str, str | None, str | None, str]]:
    """A valid scope at a random level, and the parts the parser should give back."""
    subscription = str(draw(st.uuids()))
    level = draw(st.sampled_from([v.SCOPE_SUBSCRIPTION, v.SCOPE_RESOURCE_GROUP, v.SCOPE_RESOURCE]))
    scope = f"/{draw(st.sampled_from(['subscriptions', 'SUBSCRIPTIONS']))}/{subscription}"
    if level == v.SCOPE_SUBSCRIPTION:
        return scope, (subscription, None, None, level)
    group = draw(rg_name)
    scope += f"/{draw(st.sampled_from(['resourceGroups', 'resourcegroups']))}/{group}"
    if level == v.SCOPE_RESOURCE_GROUP:
        return scope, (subscription, group, None, level)
    namespace, kind = draw(provider), draw(segment)
    children = draw(st.lists(st.tuples(segment, segment), max_size=2))
    scope += f"/providers/{namespace}/{kind}/{draw(segment)}"
    scope += "".join(f"/{child}/{name}" for child, name in children)
    types = "/".join([namespace, kind, *(child for child, _name in children)])
    return scope, (subscription, group, types, level)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    built=arm_scopes(),
    garbage=near("/subscriptionsresourceGroupsprovidersMicrosoft.KeyVault0123456789abcdef-", 120),
    mutation=st.sampled_from(["", "/", " ", "//x", "\t"]),
)
def test_arm_scopes(
    built: tuple[str, tuple[str, str | None, str | None, str]], garbage: str, mutation: str
) -> None:
    scope, parts = built
    parsed = no_raise(parsed_or_none, scope)
    assert parsed is not None, scope
    assert (
        parsed.subscription_id,
        parsed.resource_group,
        parsed.resource_type,
        parsed.level,
    ) == parts
    assert parsed.key() == scope.lower()  # the canonical spelling changes case only
    if mutation:
        assert no_raise(parsed_or_none, scope + mutation) is None, scope + mutation

    other = no_raise(parsed_or_none, garbage)
    if other is not None:
        assert garbage.startswith("/") and not garbage.endswith("/")
        assert guid_ok(garbage.split("/")[2])


# Characters and segments that make a scope mean something else once it is in a URL.
HOSTILE = st.sampled_from(
    ["/..", "/.", "/../x", "%", "%2e", "%2F", "?", "?a=b", "#", "#x", "\\", "\x00", "\x7f", "\n"]
    + [chr(c) for c in range(0x20)]
)


@fuzzes("scope_problem")
@settings(max_examples=EXAMPLES, deadline=None)
@given(built=arm_scopes(), hostile=HOSTILE, at=st.integers(min_value=0), anything=st.text())
def test_a_scope_with_a_dot_segment_percent_query_fragment_or_control_is_refused(
    built: tuple[str, tuple[str, str | None, str | None, str]], hostile: str, at: int, anything: str
) -> None:
    scope, _parts = built
    assert no_raise(v.scope_problem, scope) is None, scope
    spoiled = [scope + hostile]
    if "/" not in hostile:
        # A character that is never part of an id is refused anywhere, inside a name too. (A dot
        # segment is one only between slashes: `kv..1` is a name.)
        cut = at % (len(scope) + 1)
        spoiled.append(scope[:cut] + hostile + scope[cut:])
    for bad in spoiled:
        assert no_raise(v.scope_problem, bad) is not None, bad
        assert no_raise(parsed_or_none, bad) is None, bad
    # Whatever the parser accepts has none of those problems (parse implies plain).
    if no_raise(parsed_or_none, anything) is not None:
        assert no_raise(v.scope_problem, anything) is None


# --- canonical casing of resource ids ----------------------------------------------------------

ARM_KEYWORDS = {"subscriptions", "resourceGroups", "providers"}
# Every casing of a fixed segment the portal emits, and what it must become.
CANONICAL_SEGMENTS = [
    ("resourcegroups", "resourceGroups"),
    ("RESOURCEGROUPS", "resourceGroups"),
    ("Subscriptions", "subscriptions"),
    ("Providers", "providers"),
]
TYPES = st.sampled_from(
    [
        ("microsoft.managedidentity", "Microsoft.ManagedIdentity", "userassignedidentities",
         "userAssignedIdentities", "federatedidentitycredentials", "federatedIdentityCredentials"),
        ("MICROSOFT.KEYVAULT", "Microsoft.KeyVault", "VAULTS", "vaults", "secrets", "secrets"),
        ("microsoft.storage", "Microsoft.Storage", "storageaccounts", "storageAccounts",
         "blobservices", "blobServices"),
        ("Microsoft.ServiceBus", "Microsoft.ServiceBus", "Namespaces", "namespaces",
         "Subscriptions", "subscriptions"),
    ]
)  # fmt: skip


@st.composite
def any_cased_ids(draw: st.DrawFn) -> tuple[str, str]:
    """A resource id (optionally with a role assignment on it) in random casing, and the same id
    in canonical casing. Names are drawn from anything, keywords included."""
    name = st.one_of(segment, st.sampled_from(["providers", "resourcegroups", "Subscriptions"]))
    sub, group = str(draw(st.uuids())), draw(name)
    ns_any, ns, top_any, top, child_any, child = draw(TYPES)
    kw = {k.lower(): draw(st.sampled_from([k, k.lower(), k.upper(), k.capitalize()])) for k in
          ARM_KEYWORDS}  # fmt: skip
    mixed = f"/{kw['subscriptions']}/{sub}/{kw['resourcegroups']}/{group}"
    canonical = f"/subscriptions/{sub}/resourceGroups/{group}"
    if draw(st.booleans()):
        resource, leaf = draw(name), draw(name)
        mixed += f"/{kw['providers']}/{ns_any}/{top_any}/{resource}/{child_any}/{leaf}"
        canonical += f"/providers/{ns}/{top}/{resource}/{child}/{leaf}"
    if draw(st.booleans()):
        assignment = str(draw(st.uuids()))
        mixed += f"/{kw['providers']}/microsoft.authorization/roleassignments/{assignment}"
        canonical += f"/providers/Microsoft.Authorization/roleAssignments/{assignment}"
    return mixed, canonical


@fuzzes("canonical_arm_id")
@settings(max_examples=EXAMPLES, deadline=None)
@given(built=any_cased_ids(), anything=st.text(), scope=arm_scopes())
def test_canonical_arm_ids(built: tuple[str, str], anything: str, scope: Any) -> None:
    mixed, canonical = built
    assert no_raise(v.canonical_arm_id, mixed) == canonical
    assert v.canonical_arm_id(canonical) == canonical
    # Total, case-only and idempotent on anything at all.
    for value in (anything, scope[0]):
        once = no_raise(v.canonical_arm_id, value)
        assert once.lower() == value.lower()
        assert v.canonical_arm_id(once) == once
    # A scope stays the same scope, its names untouched.
    parsed, again = parsed_or_none(scope[0]), parsed_or_none(v.canonical_arm_id(scope[0]))
    assert parsed is not None
    assert again is not None
    assert (again.subscription_id, again.resource_group, again.level) == (
        parsed.subscription_id,
        parsed.resource_group,
        parsed.level,
    )
    assert (again.resource_type or "").lower() == (parsed.resource_type or "").lower()
    assert v.canonical_arm_id(scope[0]).startswith("/subscriptions/")
