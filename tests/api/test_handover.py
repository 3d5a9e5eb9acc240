"""Manifests as YAML or JSON, the hand-over document, and verification."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from identities.models import AuditEvent, IdentityRequest
from tests.api.conftest import CLIENT_ID, TokenFactory

pytestmark = pytest.mark.django_db


def url(identity_request: IdentityRequest, action: str) -> str:
    return f"/api/v1/identity-requests/{identity_request.pk}/{action}/"


def test_manifests_are_a_yaml_bundle_when_asked_by_accept_header(
    ready_request: IdentityRequest, requester: Any, make_token: TokenFactory, token_client: Any
) -> None:
    client = token_client(make_token(requester, ["read"]))

    response = client.get(url(ready_request, "manifests"), HTTP_ACCEPT="application/yaml")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    documents = list(yaml.safe_load_all(response.content))
    assert [d["kind"] for d in documents] == ["ServiceAccount", "Deployment"]
    service_account = documents[0]
    assert service_account["metadata"]["name"] == "checkout"
    assert service_account["metadata"]["namespace"] == "payments"
    assert service_account["metadata"]["annotations"]["azure.workload.identity/client-id"] == (
        CLIENT_ID
    )
    labels = documents[1]["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"


def test_manifests_are_yaml_with_the_format_parameter_and_json_otherwise(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    client = client_for(requester)

    as_yaml = client.get(url(ready_request, "manifests"), {"format": "yaml", "kind": "job"})
    as_json = client.get(
        url(ready_request, "manifests"), {"kind": ["deployment", "serviceaccount"]}
    )

    assert as_yaml["Content-Type"].startswith("application/yaml")
    assert [d["kind"] for d in yaml.safe_load_all(as_yaml.content)] == ["Job"]
    body = as_json.json()
    assert body["kinds"] == ["serviceaccount", "deployment"], "ServiceAccount first"
    assert body["documents"][0]["manifest"]["kind"] == "ServiceAccount"
    assert list(yaml.safe_load_all(body["yaml"]))[1]["kind"] == "Deployment"


def test_the_image_parameter_fills_the_workload_skeleton(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).get(
        url(ready_request, "manifests"), {"image": "registry.example.com/checkout:1.4.2"}
    )
    deployment = response.json()["documents"][1]["manifest"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/checkout:1.4.2"
    )


def test_manifests_of_a_request_that_is_not_ready_are_a_conflict_even_in_yaml(
    pending_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).get(
        url(pending_request, "manifests"), HTTP_ACCEPT="application/yaml"
    )
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert "ready" in response.json()["detail"]


def test_an_unknown_manifest_kind_is_a_validation_problem(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).get(url(ready_request, "manifests"), {"kind": "pod"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "kind"


def test_an_unsupported_representation_is_406_problem_json(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).get(url(ready_request, "manifests"), HTTP_ACCEPT="text/html")
    assert response.status_code == 406
    assert response["Content-Type"] == "application/problem+json"


def test_the_handover_document_carries_cli_terraform_and_env_vars(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    body = client_for(requester).get(url(ready_request, "handover")).json()
    assert "AZURE_CLIENT_ID" in {v["name"] for v in body["env_vars"]}
    assert body["az_cli"][0]["command"].startswith("az ")
    assert "azurerm_user_assigned_identity" in body["terraform"]


def test_verify_queues_a_check_and_audits_it(
    ready_request: IdentityRequest,
    requester: Any,
    client_for: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(requester).post(url(ready_request, "verify"), format="json")

    assert response.status_code == 202
    assert response.json()["verifications"].endswith(url(ready_request, "verifications"))
    assert len(callbacks) == 1
    assert AuditEvent.objects.filter(
        identity_request=ready_request, action="identity_request.verification_requested"
    ).exists()


def test_verifying_a_pending_request_is_a_conflict(
    pending_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    response = client_for(requester).post(url(pending_request, "verify"), format="json")
    assert response.status_code == 409


def test_verification_results_explain_the_mismatch(
    ready_request: IdentityRequest, requester: Any, client_for: Any
) -> None:
    from provisioning.models import Verification

    fic = ready_request.federated_credentials.get()
    Verification.objects.create(
        identity_request=ready_request,
        federated_credential=fic,
        outcome="failed",
        error_code="AADSTS70021",
        summary="No matching federated identity record found.",
        mismatches=[
            {
                "field": "subject",
                "expected": fic.subject,
                "presented": "system:serviceaccount:payments:default",
                "explanation": "The pod runs as the default ServiceAccount.",
            }
        ],
    )

    body = client_for(requester).get(url(ready_request, "verifications")).json()

    assert body[0]["outcome"] == "failed"
    assert body[0]["error_code"] == "AADSTS70021"
    assert body[0]["mismatches"][0]["field"] == "subject"
    assert (body[0]["namespace"], body[0]["service_account"]) == ("payments", "checkout")
