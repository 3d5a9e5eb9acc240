"""The new-request form: the policy's findings name the field and the rule, the live check
answers in JSON, and the preview shows exactly what approval would create."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from identities.models import AuditEvent, Cluster, IdentityRequest
from tests.support.people import RESOURCE_GROUP_SCOPE, VAULT_SCOPE
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


def tag_with_id(html: str, dom_id: str) -> str:
    """The opening tag of the element with `id`."""
    match = re.search(rf'<[a-z]+[^>]*\bid="{re.escape(dom_id)}"[^>]*>', html)
    assert match is not None, dom_id
    return match.group(0)


@pytest.fixture
def form_data(cluster: Cluster, catalog: Any) -> dict[str, str]:
    return {
        "team": "payments",
        "cluster": cluster.name,
        "namespace": "payments",
        "service_account": "checkout",
        "app_name": "checkout",
        "roles-TOTAL_FORMS": "1",
        "roles-INITIAL_FORMS": "0",
        "roles-MIN_NUM_FORMS": "1",
        "roles-MAX_NUM_FORMS": "20",
        "roles-0-role": "Key Vault Secrets User",
        "roles-0-scope": VAULT_SCOPE,
        "tags": "costCentre=cc-4711\nenvironment=dev",
        "justification": "Checkout reads its payment provider secrets from Key Vault.",
    }


def test_the_form_offers_my_clusters_and_only_my_teams_namespaces(
    client_for: ClientFor, requester: Any, cluster: Cluster
) -> None:
    response = client_for(requester).get(reverse("request_new"))

    [option] = response.context["cluster_options"]
    assert option.cluster == cluster
    assert option.namespaces == ["payments", "payments-jobs"]
    html = response.content.decode()
    assert f'<datalist id="namespaces-{cluster.name}">' in html
    assert '<option value="search">' not in html


def test_the_role_picker_lists_the_catalog_with_descriptions(
    client_for: ClientFor, requester: Any, cluster: Cluster, catalog: Any
) -> None:
    html = client_for(requester).get(reverse("request_new")).content.decode()

    description = catalog["Key Vault Secrets User"].description
    assert f'data-description="{description}"' in html
    assert "Contributor (privileged: exception only)" in html


def test_a_valid_request_is_filed_and_shown(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(reverse("request_new"), form_data)

    identity_request = IdentityRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("request_detail", args=[identity_request.pk])
    assert identity_request.requester == requester
    assert identity_request.tags == {"costCentre": "cc-4711", "environment": "dev"}
    [role] = identity_request.roles.all()
    assert (role.role.name, role.scope) == ("Key Vault Secrets User", VAULT_SCOPE)
    assert AuditEvent.objects.filter(
        action="identity_request.created", identity_request=identity_request
    ).exists()


def test_a_namespace_of_another_team_is_refused_naming_the_field_and_the_rule(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(
        reverse("request_new"), {**form_data, "namespace": "search"}
    )

    assert response.status_code == 400
    assert not IdentityRequest.objects.exists()
    [violation] = response.context["feedback"].violations
    assert (violation.finding.field, violation.finding.rule) == ("namespace", "namespace_not_owned")
    assert violation.dom_id == "id_namespace"
    html = response.content.decode()
    assert 'id="id_namespace-feedback"' in html
    assert "namespace_not_owned" in html.split('id="id_namespace-feedback"')[1].split("</ul>")[0]
    assert 'aria-invalid="true"' in tag_with_id(html, "id_namespace")
    # What was typed is kept so it can be fixed.
    assert 'value="search"' in html


def test_findings_on_a_role_land_on_that_roles_scope(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    data = {
        **form_data,
        "roles-TOTAL_FORMS": "3",
        "roles-1-role": "",
        "roles-1-scope": "",
        "roles-2-role": "Reader",
        "roles-2-scope": RESOURCE_GROUP_SCOPE,
    }

    response = client_for(requester).post(reverse("request_new"), data)

    assert response.status_code == 400
    [violation] = response.context["feedback"].violations
    assert violation.finding.field == "roles[1].scope"  # the blank row is not a role
    assert violation.finding.rule == "broad_scope"
    assert violation.dom_id == "id_roles-2-scope"


def test_missing_fields_are_policy_findings_with_their_rule(
    client_for: ClientFor, requester: Any, cluster: Cluster
) -> None:
    response = client_for(requester).post(
        reverse("request_new"),
        {
            "team": "payments",
            "cluster": cluster.name,
            "roles-TOTAL_FORMS": "1",
            "roles-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 400
    rules = {(v.finding.field, v.finding.rule) for v in response.context["feedback"].violations}
    assert ("namespace", "required") in rules
    assert ("service_account", "required") in rules
    assert ("justification", "required") in rules


def test_tag_lines_that_are_not_name_value_are_refused_on_the_tags_field(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(
        reverse("request_new"), {**form_data, "tags": "costCentre=cc-4711\nnot a tag"}
    )

    assert response.status_code == 400
    assert "tags_format" in response.context["form"].errors["tags"][0]
    assert "line 2" in response.context["form"].errors["tags"][0]


def test_check_and_preview_without_javascript_files_nothing(
    client_for: ClientFor, requester: Any, form_data: dict[str, str], cluster: Cluster
) -> None:
    response = client_for(requester).post(reverse("request_new"), {**form_data, "check": "1"})

    assert response.status_code == 200
    assert not IdentityRequest.objects.exists()
    preview = response.context["preview"]
    assert preview.identity_name == "aks-test-payments-checkout"
    assert preview.fic_subject == "system:serviceaccount:payments:checkout"
    assert preview.issuer == cluster.oidc_issuer_url
    assert [(r.role, r.scope) for r in preview.role_assignments] == [
        ("Key Vault Secrets User", VAULT_SCOPE)
    ]
    tags = dict(preview.tags)
    assert tags["costCentre"] == "cc-4711"
    assert tags["requester"] == "alice"
    assert tags["managed-by"] == "workload-identity-portal"


def test_add_a_role_without_javascript_adds_a_blank_row(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(reverse("request_new"), {**form_data, "add_role": "1"})

    assert response.status_code == 200
    assert len(response.context["role_rows"]) == 2
    assert not IdentityRequest.objects.exists()


def test_the_live_check_answers_findings_with_their_target_control(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(
        reverse("request_check"), {**form_data, "namespace": "search"}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    [finding] = [f for f in body["findings"] if f["blocking"]]
    assert finding == {
        "field": "namespace",
        "rule": "namespace_not_owned",
        "message": "Namespace 'search' on cluster 'aks-test' is not owned by team 'payments'.",
        "target": "id_namespace",
        "label": "Namespace",
        "blocking": True,
    }
    assert "namespace_not_owned" in body["html"]["policy-feedback"]
    assert "system:serviceaccount:search:checkout" in body["html"]["request-preview"]
    assert not IdentityRequest.objects.exists()


def test_the_live_check_of_a_valid_draft_is_ok_with_warnings_explained(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(
        reverse("request_check"), {**form_data, "service_account": "default"}
    )

    body = response.json()
    assert body["ok"] is True
    [warning] = body["findings"]
    assert (warning["rule"], warning["blocking"]) == ("default_service_account", False)
    assert "No policy violations" in body["html"]["policy-feedback"]


def test_the_live_check_escapes_what_was_typed(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(
        reverse("request_check"), {**form_data, "app_name": "<script>alert(1)</script>"}
    )

    html = response.json()["html"]["policy-feedback"]
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_an_exception_needs_the_box_ticked_and_then_warns_about_two_approvers(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    data = {**form_data, "roles-0-role": "Contributor", "roles-0-scope": RESOURCE_GROUP_SCOPE}
    client = client_for(requester)

    refused = client.post(reverse("request_check"), data).json()
    allowed = client.post(
        reverse("request_check"),
        {**data, "is_exception": "on", "justification": "Nightly batch needs the whole group."},
    ).json()

    assert {f["rule"] for f in refused["findings"] if f["blocking"]} == {
        "privileged_role",
        "broad_scope",
    }
    assert allowed["ok"] is True
    assert "two_approvers" in {f["rule"] for f in allowed["findings"]}


@pytest.mark.parametrize(
    ("suffix", "rule"),
    [
        ("/../../../..", "scope_dot_segment"),
        ("?api-version=x", "scope_forbidden_character"),
        ("/%2e%2e", "scope_percent_encoding"),
    ],
)
def test_a_scope_that_azure_would_read_differently_is_refused_on_its_field(
    client_for: ClientFor, requester: Any, form_data: dict[str, str], suffix: str, rule: str
) -> None:
    response = client_for(requester).post(
        reverse("request_new"), {**form_data, "roles-0-scope": VAULT_SCOPE + suffix}
    )

    assert response.status_code == 400
    assert not IdentityRequest.objects.exists()
    [violation] = response.context["feedback"].violations
    assert (violation.finding.field, violation.finding.rule) == ("roles[0].scope", rule)
    assert violation.dom_id == "id_roles-0-scope"
