"""Rendered Kubernetes manifests: schema-valid, labelled where the webhook looks, safe YAML."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest
import yaml

from identities.manifests import (
    CLIENT_ID_ANNOTATION,
    MANAGED_BY_LABEL,
    MANIFEST_KINDS,
    NAME_LABEL,
    TENANT_ID_ANNOTATION,
    TOKEN_EXPIRATION_ANNOTATION,
    USE_LABEL,
    InvalidHandoverSpec,
    render_bundle,
    render_cronjob,
    render_deployment,
    render_job,
    render_one,
    render_service_account,
)
from tests.manifests.factories import make_spec
from tests.support.services import REPO_ROOT

K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
WORKLOAD_KINDS = ("deployment", "job", "cronjob")


def pod_template(document: dict[str, Any]) -> dict[str, Any]:
    if document["kind"] == "CronJob":
        return document["spec"]["jobTemplate"]["spec"]["template"]
    return document["spec"]["template"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kind", sorted(MANIFEST_KINDS))
def test_every_manifest_validates_strictly(kind: str, version: str) -> None:
    document = MANIFEST_KINDS[kind](make_spec(token_expiration_seconds=7200))
    assert kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_the_webhook_label_is_the_string_true_on_the_pod_template(kind: str) -> None:
    document = MANIFEST_KINDS[kind](make_spec())
    assert pod_template(document)["metadata"]["labels"][USE_LABEL] == "true"
    # Only the pod template counts; on the workload object itself it would be misleading.
    assert USE_LABEL not in document["metadata"]["labels"]


def test_the_cronjob_label_sits_inside_the_job_templates_pod_template() -> None:
    document = render_cronjob(make_spec())
    job_template = document["spec"]["jobTemplate"]
    assert USE_LABEL not in job_template["metadata"]["labels"]
    assert job_template["spec"]["template"]["metadata"]["labels"][USE_LABEL] == "true"


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_pods_run_as_the_identitys_service_account(kind: str) -> None:
    spec = make_spec(service_account="orders-reader")
    assert pod_template(MANIFEST_KINDS[kind](spec))["spec"]["serviceAccountName"] == (
        "orders-reader"
    )


def test_the_deployment_selector_matches_its_pod_template() -> None:
    document = render_deployment(make_spec())
    match_labels = document["spec"]["selector"]["matchLabels"]
    template_labels = document["spec"]["template"]["metadata"]["labels"]
    assert match_labels == {NAME_LABEL: "orders-api"}
    assert match_labels.items() <= template_labels.items()


def test_jobs_do_not_restart_pods_in_place() -> None:
    assert pod_template(render_job(make_spec()))["spec"]["restartPolicy"] == "Never"
    assert pod_template(render_cronjob(make_spec()))["spec"]["restartPolicy"] == "Never"


def test_the_service_account_carries_the_identity_and_portal_labels() -> None:
    spec = make_spec()
    document = render_service_account(spec)
    assert document["apiVersion"] == "v1"
    assert document["metadata"]["name"] == "orders-api"
    assert document["metadata"]["namespace"] == "team-a"
    annotations = document["metadata"]["annotations"]
    assert annotations[CLIENT_ID_ANNOTATION] == spec.client_id
    assert annotations[TENANT_ID_ANNOTATION] == spec.tenant_id
    assert TOKEN_EXPIRATION_ANNOTATION not in annotations
    assert document["metadata"]["labels"] == {
        NAME_LABEL: "orders-api",
        MANAGED_BY_LABEL: "workload-identity-portal",
    }


def test_token_expiration_is_annotated_as_a_string() -> None:
    document = render_service_account(make_spec(token_expiration_seconds=86400))
    assert document["metadata"]["annotations"][TOKEN_EXPIRATION_ANNOTATION] == "86400"


@pytest.mark.parametrize("seconds", [3600, 86400])
def test_token_expiration_bounds_are_accepted(seconds: int) -> None:
    assert make_spec(token_expiration_seconds=seconds).token_expiration_seconds == seconds


@pytest.mark.parametrize("seconds", [3599, 86401, 0, -3600, 600, True, "7200", 7200.0])
def test_token_expiration_out_of_range_is_refused_naming_the_field(seconds: object) -> None:
    with pytest.raises(InvalidHandoverSpec, match=r"token_expiration_seconds.*3600-86400") as err:
        make_spec(token_expiration_seconds=seconds)
    assert err.value.field == "token_expiration_seconds"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("app_name", "Orders"),
        ("app_name", "orders_api"),
        ("app_name", "a" * 64),
        ("namespace", "team.a"),
        ("namespace", "-team"),
        ("service_account", "sa-"),
        ("service_account", "SA"),
        ("client_id", "not-a-guid"),
        ("tenant_id", ""),
        ("image", "my image"),
        ("oidc_issuer_url", "http://issuer.example/"),
    ],
)
def test_values_kubernetes_or_azure_would_reject_are_refused(field: str, value: str) -> None:
    with pytest.raises(InvalidHandoverSpec) as err:
        make_spec(**{field: value})
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_a_federated_subject_for_another_service_account_is_refused() -> None:
    with pytest.raises(InvalidHandoverSpec, match="system:serviceaccount:team-a:orders-api"):
        make_spec(fic_subject="system:serviceaccount:team-a:default")


def test_a_service_account_may_be_a_dotted_subdomain() -> None:
    spec = make_spec(service_account="orders.reader")
    assert render_service_account(spec)["metadata"]["name"] == "orders.reader"


def test_a_cronjob_name_longer_than_52_characters_is_refused() -> None:
    spec = make_spec(app_name="a" * 53)
    render_deployment(spec)  # fine for a Deployment
    with pytest.raises(InvalidHandoverSpec, match="52") as err:
        render_cronjob(spec)
    assert err.value.field == "app_name"


def test_the_cronjob_uses_the_given_schedule_and_refuses_a_malformed_one() -> None:
    assert render_cronjob(make_spec(), schedule="*/15 * * * *")["spec"]["schedule"] == (
        "*/15 * * * *"
    )
    assert render_cronjob(make_spec(), schedule="@daily")["spec"]["schedule"] == "@daily"
    with pytest.raises(InvalidHandoverSpec) as err:
        render_cronjob(make_spec(), schedule="every hour")
    assert err.value.field == "schedule"


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_containers_follow_restricted_pod_security(kind: str) -> None:
    pod_spec = pod_template(MANIFEST_KINDS[kind](make_spec()))["spec"]
    assert pod_spec["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod_spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108 (expected value)


def test_without_an_image_the_skeleton_uses_a_placeholder_that_cannot_pull() -> None:
    text = render_one(make_spec(image=None), "deployment")
    image = yaml.safe_load(text)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "replace-me.invalid/orders-api:replace-me"
    assert f"# Replace the placeholder image {image}" in text


def test_a_given_image_is_used_as_is() -> None:
    text = render_one(make_spec(image="myacr.azurecr.io/orders-api:1.4.2"), "deployment")
    assert "placeholder" not in text
    document = yaml.safe_load(text)
    assert document["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "myacr.azurecr.io/orders-api:1.4.2"
    )


def test_the_bundle_parses_back_to_the_rendered_documents() -> None:
    spec = make_spec(token_expiration_seconds=3600)
    text = render_bundle(spec, kinds=list(MANIFEST_KINDS))
    assert list(yaml.safe_load_all(text)) == [render(spec) for render in MANIFEST_KINDS.values()]
    assert text.count("\n---\n") == len(MANIFEST_KINDS) - 1


def test_the_default_bundle_is_the_service_account_and_a_deployment() -> None:
    kinds = [document["kind"] for document in yaml.safe_load_all(render_bundle(make_spec()))]
    assert kinds == ["ServiceAccount", "Deployment"]


@pytest.mark.parametrize("kind", sorted(MANIFEST_KINDS))
def test_render_one_is_the_renderers_document_as_yaml(kind: str) -> None:
    spec = make_spec()
    assert yaml.safe_load(render_one(spec, kind)) == MANIFEST_KINDS[kind](spec)


def test_the_label_value_stays_a_quoted_string_in_the_yaml_text() -> None:
    text = render_bundle(make_spec(), kinds=list(MANIFEST_KINDS))
    lines = [line.strip() for line in text.splitlines() if USE_LABEL in line]
    assert len(lines) == 3  # one per pod template: Deployment, Job, CronJob
    for line in lines:
        assert re.fullmatch(r"azure\.workload\.identity/use: (['\"])true\1", line), line


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(InvalidHandoverSpec, match="cronjob, deployment, job, serviceaccount"):
        render_one(make_spec(), "statefulset")
    with pytest.raises(InvalidHandoverSpec):
        render_bundle(make_spec(), kinds=[])


def test_a_line_break_in_a_value_cannot_inject_yaml_through_the_header() -> None:
    spec = make_spec(portal_url="https://portal.example.com/x\nkind: Secret\u2028---\n")
    text = render_bundle(spec)
    assert list(yaml.safe_load_all(text)) == [
        render_service_account(spec),
        render_deployment(spec),
    ]


def test_the_modules_do_not_import_django() -> None:
    # The domain models are written separately; these modules must stay importable without them.
    code = "import sys, identities.handover; print('django' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
