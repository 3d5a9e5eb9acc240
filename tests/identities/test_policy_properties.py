"""Property tests: whatever the policy accepts, Kubernetes and Azure accept too; whatever they
would refuse, the policy refuses naming the field. The rules are restated here as independent
regular expressions from AZURE-FACTS.md §2.4/§2.5 and the Kubernetes API conventions."""

from __future__ import annotations

import re
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from identities import naming
from identities.policy import RoleDraft, evaluate_request
from identities.tags import identity_tags
from tests.identities.policy_support import SUBSCRIPTION, make_context, make_draft

# Kubernetes: namespace = DNS-1123 label, ServiceAccount = DNS-1123 subdomain.
K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Azure: UAMI 3-128, FIC 3-120, alphanumerics, '-' and '_', first character alphanumeric.
UAMI = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}")
FIC = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}")
FIC_MAX = 600
# Azure tags: at most 50, name <= 512 and without < > % & \ ? /, value <= 256.
TAG_NAME_FORBIDDEN = set("<>%&\\?/")
# An ARM scope at resource level inside a subscription.
ARM_RESOURCE = re.compile(
    r"/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"/resourceGroups/[^/]+/providers/[A-Za-z0-9]+(\.[A-Za-z0-9]+)+/[^/]+/[^/]+(/[^/]+/[^/]+)*",
    re.IGNORECASE,
)

NAME_ALPHABET = "abcxyz0129-._AZ_ é/:"
label_like = st.one_of(
    st.from_regex(K8S_LABEL, fullmatch=True),
    st.text(alphabet=NAME_ALPHABET, max_size=70),
    st.text(alphabet="a-", min_size=60, max_size=66),
)
subdomain_like = st.one_of(
    st.from_regex(K8S_SUBDOMAIN, fullmatch=True),
    st.text(alphabet=NAME_ALPHABET, max_size=260),
    st.text(alphabet="ab.-", min_size=248, max_size=258),
)
valid_label = st.from_regex(K8S_LABEL, fullmatch=True).filter(lambda s: len(s) <= 63)
valid_subdomain = st.from_regex(K8S_SUBDOMAIN, fullmatch=True).filter(lambda s: len(s) <= 253)
aks_cluster_name = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?", fullmatch=True)


def _fields(result: object, kind: str = "violations") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in getattr(result, kind):
        found.setdefault(item.field, []).append(item.message)
    return found


@settings(max_examples=300, deadline=None)
@given(namespace=label_like)
def test_a_namespace_is_accepted_only_if_kubernetes_would_accept_it(namespace: str) -> None:
    context = make_context(owned_namespaces=frozenset({namespace}))
    result = evaluate_request(make_draft(namespace=namespace), context)
    refused = _fields(result).get("namespace")
    kubernetes_ok = K8S_LABEL.fullmatch(namespace) is not None and len(namespace) <= 63
    if refused is None:
        assert kubernetes_ok
    if not kubernetes_ok:
        assert refused, f"{namespace!r} should be refused"
        assert any("Namespace" in message for message in refused)


@settings(max_examples=300, deadline=None)
@given(service_account=subdomain_like)
def test_a_service_account_is_accepted_only_if_kubernetes_would_accept_it(
    service_account: str,
) -> None:
    result = evaluate_request(make_draft(service_account=service_account), make_context())
    refused = _fields(result).get("service_account")
    kubernetes_ok = (
        K8S_SUBDOMAIN.fullmatch(service_account) is not None and len(service_account) <= 253
    )
    if refused is None:
        assert kubernetes_ok
        assert len(naming.fic_subject("payments", service_account)) <= FIC_MAX
    if not kubernetes_ok:
        assert refused, f"{service_account!r} should be refused"
        assert any("ServiceAccount" in message for message in refused)


@settings(max_examples=300, deadline=None)
@given(
    cluster=aks_cluster_name,
    namespace=valid_label,
    app_name=valid_label,
    service_account=valid_subdomain,
)
def test_derived_azure_names_always_satisfy_azure_rules(
    cluster: str, namespace: str, app_name: str, service_account: str
) -> None:
    uami = naming.uami_name(
        cluster=cluster, namespace=namespace, app_name=app_name, service_account=service_account
    )
    fic = naming.fic_name(cluster=cluster, namespace=namespace, service_account=service_account)
    assert UAMI.fullmatch(uami), uami
    assert FIC.fullmatch(fic), fic
    assert uami == naming.uami_name(
        cluster=cluster, namespace=namespace, app_name=app_name, service_account=service_account
    ), "names are deterministic"


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.text(max_size=150), min_size=4, max_size=4))
def test_derived_names_are_valid_even_for_garbage_input(parts: list[str]) -> None:
    cluster, namespace, app_name, service_account = parts
    assert UAMI.fullmatch(
        naming.uami_name(
            cluster=cluster, namespace=namespace, app_name=app_name, service_account=service_account
        )
    )
    assert FIC.fullmatch(
        naming.fic_name(cluster=cluster, namespace=namespace, service_account=service_account)
    )


tag_key = st.one_of(
    st.text(alphabet="abcXYZ09-_ .:=", min_size=1, max_size=20),
    st.text(alphabet="ab<>%&\\?/", min_size=1, max_size=5),
    st.text(alphabet="k", min_size=510, max_size=515),
    st.just(""),
)
tag_value = st.one_of(st.text(max_size=20), st.text(alphabet="v", min_size=250, max_size=260))


@settings(max_examples=300, deadline=None)
@given(tags=st.dictionaries(tag_key, tag_value, max_size=45))
def test_accepted_tags_are_within_azure_limits_and_bad_ones_name_their_key(
    tags: dict[str, str],
) -> None:
    result = evaluate_request(make_draft(tags=tags), make_context())
    refused = {field for field in _fields(result) if field == "tags" or field.startswith("tags.")}
    for key, value in tags.items():
        key_bad = not key.strip() or len(key) > 512 or bool(set(key) & TAG_NAME_FORBIDDEN)
        if key_bad or len(value) > 256:
            assert f"tags.{key}" in refused, key
    if not refused:
        stub = SimpleNamespace(
            approvals=SimpleNamespace(all=lambda: []),
            tags=tags,
            app_name="checkout",
            team=SimpleNamespace(name="payments"),
            cluster=SimpleNamespace(name="aks-test"),
            namespace="payments",
            service_account="checkout",
            pk=1,
            requester=SimpleNamespace(get_username=lambda: "alice"),
        )
        applied = identity_tags(stub)  # type: ignore[arg-type]
        assert len(applied) <= 50
        for key, value in applied.items():
            assert 0 < len(key) <= 512 and not set(key) & TAG_NAME_FORBIDDEN
            assert len(value) <= 256


segment = st.text(alphabet="abcXY09-_.()", min_size=1, max_size=12)
scope_like = st.one_of(
    st.builds(
        lambda sub, rg, ns, typ, name: (
            f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{typ}/{name}"
        ),
        st.sampled_from([SUBSCRIPTION, SUBSCRIPTION.upper(), "not-a-guid", ""]),
        segment,
        st.sampled_from(["Microsoft.KeyVault", "Microsoft", "microsoft.storage", "1bad.ns"]),
        segment,
        segment,
    ),
    st.text(
        alphabet="/subscriptionsresourceGroupsprovidersMicrosoft.KeyVault0123456789abcdef-",
        max_size=120,
    ),
)


@settings(max_examples=300, deadline=None)
@given(scope=scope_like)
def test_an_accepted_scope_is_a_resource_id_inside_an_allowed_subscription(scope: str) -> None:
    draft = make_draft(roles=(RoleDraft("Reader", scope),))
    result = evaluate_request(draft, make_context())
    refused = _fields(result).get("roles[0].scope")
    if refused is None:
        assert ARM_RESOURCE.fullmatch(scope), scope
        assert scope.split("/")[2].lower() == SUBSCRIPTION
    elif not ARM_RESOURCE.fullmatch(scope):
        assert any("Scope" in message for message in refused)
