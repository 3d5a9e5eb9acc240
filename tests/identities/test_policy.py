"""The policy engine, rule by rule (pure: no database)."""

from __future__ import annotations

import pytest

from identities.policy import (
    IdentityFacts,
    PolicyResult,
    RoleDraft,
    evaluate_request,
    risk_summary,
)
from tests.identities.policy_support import ISSUER, SUBSCRIPTION, VAULT, make_context, make_draft

RG_SCOPE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
SUB_SCOPE = f"/subscriptions/{SUBSCRIPTION}"
OTHER_SUB_VAULT = VAULT.replace(SUBSCRIPTION, "0f0e0d0c-0b0a-4909-8807-060504030201")


def rules(result: PolicyResult) -> set[tuple[str, str]]:
    return {(v.field, v.rule) for v in result.violations}


def warning_rules(result: PolicyResult) -> set[tuple[str, str]]:
    return {(w.field, w.rule) for w in result.warnings}


def test_a_well_formed_request_passes_without_warnings() -> None:
    result = evaluate_request(make_draft(), make_context())
    assert result.ok
    assert result.warnings == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"namespace": "kube-system"}, ("namespace", "reserved_namespace")),
        ({"namespace": "kube-anything"}, ("namespace", "reserved_namespace")),
        ({"namespace": "gatekeeper-system"}, ("namespace", "reserved_namespace")),
        ({"namespace": "search"}, ("namespace", "namespace_not_owned")),
        ({"namespace": "Payments"}, ("namespace", "dns1123_label")),
        ({"namespace": "a" * 64}, ("namespace", "dns1123_label")),
        ({"namespace": ""}, ("namespace", "required")),
        ({"service_account": "Checkout"}, ("service_account", "dns1123_subdomain")),
        ({"service_account": "a" * 254}, ("service_account", "dns1123_subdomain")),
        ({"service_account": "-checkout"}, ("service_account", "dns1123_subdomain")),
        ({"app_name": "check.out"}, ("app_name", "dns1123_label")),
        ({"team": ""}, ("team", "required")),
        ({"justification": "  "}, ("justification", "required")),
        ({"kind": "rename"}, ("kind", "unknown_kind")),
        ({"roles": (RoleDraft("Global Administrator", VAULT),)}, ("roles[0].role", "unknown_role")),
        (
            {"roles": (RoleDraft("Reader", "/subscriptions/x"),)},
            ("roles[0].scope", "malformed_scope"),
        ),
        ({"roles": (RoleDraft("Reader", VAULT + "/"),)}, ("roles[0].scope", "malformed_scope")),
        (
            {
                "roles": (
                    RoleDraft("Reader", "/providers/Microsoft.Management/managementGroups/mg"),
                )
            },
            ("roles[0].scope", "malformed_scope"),
        ),
        (
            {"roles": (RoleDraft("Reader", OTHER_SUB_VAULT),)},
            ("roles[0].scope", "scope_outside_allowed_subscriptions"),
        ),
        ({"roles": (RoleDraft("Reader", RG_SCOPE),)}, ("roles[0].scope", "broad_scope")),
        ({"roles": (RoleDraft("Reader", SUB_SCOPE),)}, ("roles[0].scope", "broad_scope")),
        ({"roles": (RoleDraft("Owner", VAULT),)}, ("roles[0].role", "privileged_role")),
        (
            {
                "roles": (
                    RoleDraft("Reader", VAULT),
                    RoleDraft("reader", VAULT.upper().replace("SUBSCRIPTIONS", "subscriptions")),
                )
            },
            ("roles[1]", "duplicate_role_scope"),
        ),
        ({"tags": {"cost/centre": "x"}}, ("tags.cost/centre", "tag_key_invalid")),
        ({"tags": {"a<b": "x"}}, ("tags.a<b", "tag_key_invalid")),
        ({"tags": {"k" * 513: "x"}}, ("tags." + "k" * 513, "tag_key_invalid")),
        ({"tags": {"owner": "v" * 257}}, ("tags.owner", "tag_value_too_long")),
        ({"tags": {"Managed-By": "me"}}, ("tags.Managed-By", "tag_key_reserved")),
        ({"tags": {"Env": "a", "env": "b"}}, ("tags.env", "tag_key_duplicate")),
        ({"tags": {f"t{i}": "x" for i in range(42)}}, ("tags", "too_many_tags")),
    ],
)
def test_each_rule_refuses_with_the_field_it_is_about(
    overrides: dict[str, object], expected: tuple[str, str]
) -> None:
    result = evaluate_request(make_draft(**overrides), make_context())
    assert expected in rules(result), result.violations


def test_the_team_may_use_41_tags_because_the_portal_sets_nine() -> None:
    tags = {f"t{i}": "x" for i in range(41)}
    assert evaluate_request(make_draft(tags=tags), make_context()).ok


def test_unknown_team_and_cluster_are_named() -> None:
    result = evaluate_request(make_draft(), make_context(team_exists=False, cluster=None))
    assert {("team", "unknown_team"), ("cluster", "unknown_cluster")} <= rules(result)


def test_a_cluster_without_workload_identity_is_refused() -> None:
    from dataclasses import replace

    from tests.identities.policy_support import CLUSTER

    context = make_context(cluster=replace(CLUSTER, workload_identity_enabled=False))
    assert ("cluster", "workload_identity_disabled") in rules(
        evaluate_request(make_draft(), context)
    )


def test_an_issuer_without_trailing_slash_is_flagged() -> None:
    from dataclasses import replace

    from tests.identities.policy_support import CLUSTER

    context = make_context(cluster=replace(CLUSTER, oidc_issuer_url=ISSUER.rstrip("/")))
    result = evaluate_request(make_draft(), context)
    assert result.ok
    assert ("cluster", "issuer_without_trailing_slash") in warning_rules(result)


def test_privileged_roles_and_broad_scopes_in_an_exception_are_warnings() -> None:
    draft = make_draft(
        roles=(RoleDraft("Contributor", RG_SCOPE),),
        is_exception=True,
        justification="The nightly migration recreates resources in the group.",
    )
    result = evaluate_request(draft, make_context())
    assert result.ok
    assert {
        ("roles[0].role", "privileged_role"),
        ("roles[0].scope", "broad_scope"),
        ("is_exception", "two_approvers"),
    } <= warning_rules(result)
    assert risk_summary(draft, result).level == "high"


def test_an_exception_needs_a_real_justification() -> None:
    draft = make_draft(roles=(RoleDraft("Owner", VAULT),), is_exception=True, justification="pls")
    assert ("justification", "exception_justification") in rules(
        evaluate_request(draft, make_context())
    )


def test_an_exception_nobody_needs_is_pointed_out() -> None:
    draft = make_draft(is_exception=True, justification="Just to be safe, please look twice.")
    assert ("is_exception", "exception_unneeded") in warning_rules(
        evaluate_request(draft, make_context())
    )


def test_roles_that_can_grant_access_are_warned_about() -> None:
    draft = make_draft(roles=(RoleDraft("Key Vault Data Access Administrator", VAULT),))
    result = evaluate_request(draft, make_context())
    assert result.ok
    assert ("roles[0].role", "assigns_roles") in warning_rules(result)
    assert risk_summary(draft, result).level == "high"


def test_a_role_on_an_unexpected_resource_type_is_a_warning() -> None:
    draft = make_draft(roles=(RoleDraft("AcrPull", VAULT),))
    result = evaluate_request(draft, make_context())
    assert result.ok
    assert ("roles[0].scope", "resource_type_mismatch") in warning_rules(result)
    assert risk_summary(draft, result).level == "medium"


def test_roles_can_be_named_by_guid_in_any_case() -> None:
    draft = make_draft(roles=(RoleDraft("4633458B-17DE-408A-B874-0445C86B69E6", VAULT),))
    assert evaluate_request(draft, make_context()).ok


def test_nested_resources_are_resource_scopes() -> None:
    container = (
        f"/subscriptions/{SUBSCRIPTION}/resourcegroups/rg-payments/providers/Microsoft.Storage"
        "/storageAccounts/st/blobServices/default/containers/invoices"
    )
    draft = make_draft(roles=(RoleDraft("Storage Blob Data Reader", container),))
    result = evaluate_request(draft, make_context())
    assert result.ok and result.warnings == []


def test_a_service_account_federated_by_another_identity_is_refused() -> None:
    subject = "system:serviceaccount:payments:checkout"
    context = make_context(federations={(ISSUER, subject): (7, "aks-test-payments-other")})
    result = evaluate_request(make_draft(), context)
    assert ("service_account", "already_federated") in rules(result)
    assert "aks-test-payments-other" in result.violations[0].message


def test_the_same_subject_from_another_issuer_is_not_a_clash() -> None:
    subject = "system:serviceaccount:payments:checkout"
    context = make_context(federations={("https://other-issuer/", subject): (7, "x")})
    assert evaluate_request(make_draft(), context).ok


def test_a_taken_identity_name_is_refused() -> None:
    context = make_context(taken_identity_names=frozenset({"aks-test-payments-checkout"}))
    assert ("app_name", "identity_name_taken") in rules(evaluate_request(make_draft(), context))


def _identity(**overrides: object) -> IdentityFacts:
    values: dict[str, object] = {
        "id": 3,
        "name": "aks-test-payments-checkout",
        "team": "payments",
        "status": "ready",
        "live_fic_count": 1,
        "decommission_open": False,
    }
    values.update(overrides)
    return IdentityFacts(**values)  # type: ignore[arg-type]


def _add_draft(**overrides: object) -> object:
    values: dict[str, object] = {
        "kind": "add_service_account",
        "identity_id": 3,
        "roles": (),
        "tags": {},
        "service_account": "checkout-worker",
    }
    values.update(overrides)
    return make_draft(**values)


def test_adding_a_service_account_to_a_ready_team_identity_passes() -> None:
    assert evaluate_request(_add_draft(), make_context(identity=_identity())).ok  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("identity_overrides", "draft_overrides", "expected"),
    [
        ({"live_fic_count": 20}, {}, ("service_account", "fic_limit")),
        ({"status": "provisioning"}, {}, ("identity", "identity_not_ready")),
        ({"team": "search"}, {}, ("identity", "identity_other_team")),
        ({"decommission_open": True}, {}, ("identity", "decommission_in_progress")),
        ({}, {"roles": (RoleDraft("Reader", VAULT),)}, ("roles", "roles_not_allowed")),
    ],
)
def test_adding_a_service_account_is_refused_when(
    identity_overrides: dict[str, object],
    draft_overrides: dict[str, object],
    expected: tuple[str, str],
) -> None:
    result = evaluate_request(
        _add_draft(**draft_overrides),  # type: ignore[arg-type]
        make_context(identity=_identity(**identity_overrides)),
    )
    assert expected in rules(result)


def test_nineteen_credentials_still_leave_room_for_one_more() -> None:
    context = make_context(identity=_identity(live_fic_count=19))
    assert evaluate_request(_add_draft(), context).ok  # type: ignore[arg-type]


def test_decommissioning_a_provisioning_identity_is_refused() -> None:
    draft = make_draft(
        kind="decommission", identity_id=3, roles=(), namespace="", service_account=""
    )
    result = evaluate_request(draft, make_context(identity=_identity(status="provisioning")))
    assert ("identity", "identity_not_decommissionable") in rules(result)
    assert risk_summary(draft, result).level == "low"


def test_the_default_service_account_and_pending_duplicates_are_warnings() -> None:
    result = evaluate_request(
        make_draft(service_account="default"),
        make_context(other_open_requests_for_subject=2),
    )
    assert result.ok
    assert {
        ("service_account", "default_service_account"),
        ("service_account", "pending_duplicate"),
    } <= warning_rules(result)
