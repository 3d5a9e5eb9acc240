"""Property tests: any valid DNS name and namespace renders manifests Kubernetes accepts."""

from __future__ import annotations

import shlex

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identities.handover import az_cli_commands
from identities.manifests import (
    CRONJOB_NAME_MAX,
    MANIFEST_KINDS,
    USE_LABEL,
    InvalidHandoverSpec,
    render_bundle,
)
from tests.manifests.factories import make_spec

K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())

dns_labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
dns_subdomains = (
    st.lists(dns_labels, min_size=1, max_size=4).map(".".join).filter(lambda s: len(s) <= 253)
)
expirations = st.none() | st.integers(min_value=3600, max_value=86400)

# Schema validation dominates the run time; 40 examples cover the shapes without dragging.
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(
    app_name=dns_labels,
    namespace=dns_labels,
    service_account=dns_subdomains,
    token_expiration_seconds=expirations,
)
def test_every_render_validates_for_any_valid_names(
    app_name: str, namespace: str, service_account: str, token_expiration_seconds: int | None
) -> None:
    spec = make_spec(
        app_name=app_name,
        namespace=namespace,
        service_account=service_account,
        token_expiration_seconds=token_expiration_seconds,
    )
    for kind, render in MANIFEST_KINDS.items():
        if kind == "cronjob" and len(app_name) > CRONJOB_NAME_MAX:
            with pytest.raises(InvalidHandoverSpec):
                render(spec)
            continue
        document = render(spec)
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)
        assert document["metadata"]["namespace"] == namespace
        if kind != "serviceaccount":
            template = document["spec"].get("jobTemplate", document)["spec"]["template"]
            assert template["metadata"]["labels"][USE_LABEL] == "true"
            assert template["spec"]["serviceAccountName"] == service_account


@PROPERTY_SETTINGS
@given(app_name=dns_labels, namespace=dns_labels, service_account=dns_subdomains)
def test_the_bundle_round_trips_for_any_valid_names(
    app_name: str, namespace: str, service_account: str
) -> None:
    spec = make_spec(app_name=app_name, namespace=namespace, service_account=service_account)
    kinds = ["serviceaccount", "deployment", "job"]
    documents = list(yaml.safe_load_all(render_bundle(spec, kinds=kinds)))
    assert documents == [MANIFEST_KINDS[kind](spec) for kind in kinds]


# No shell can carry a NUL byte in an argument; Azure refuses them in names and tags anyway.
shell_text = st.characters(exclude_characters="\x00")


@settings(max_examples=200, deadline=None)
@given(
    tags=st.dictionaries(
        st.text(shell_text, min_size=1, max_size=20),
        st.text(shell_text, max_size=40),
        max_size=5,
    ),
    identity_name=st.text(shell_text, min_size=1, max_size=30),
)
def test_az_cli_commands_split_back_into_their_arguments(
    tags: dict[str, str], identity_name: str
) -> None:
    for command in az_cli_commands(make_spec(tags=tags, identity_name=identity_name)):
        assert shlex.split(command.shell) == list(command.argv)
