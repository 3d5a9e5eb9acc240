"""Explaining a refused token exchange field by field."""

from __future__ import annotations

from provisioning.azure import FicState
from provisioning.federation import (
    NOT_FOUND_REFUSALS,
    Refusal,
    explain_mismatch,
    meaning,
    name_the_strings,
    refusal,
)

ISSUER = "https://eastus.oic.prod-aks.azure.com/tenant/cluster/"
FIC = FicState(
    name="fic",
    issuer=ISSUER,
    subject="system:serviceaccount:payments:api",
    audiences=("api://AzureADTokenExchange",),
)


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ISSUER,
        "sub": "system:serviceaccount:payments:api",
        "aud": ["api://AzureADTokenExchange"],
    }
    base.update(overrides)
    return base


def test_matching_token_has_no_mismatch() -> None:
    assert explain_mismatch(claims(), FIC) == []


def test_wrong_subject_names_the_subject_and_both_values() -> None:
    [mismatch] = explain_mismatch(claims(sub="system:serviceaccount:payments:worker"), FIC)
    assert mismatch.field == "subject"
    assert mismatch.expected == "system:serviceaccount:payments:api"
    assert mismatch.presented == "system:serviceaccount:payments:worker"


def test_issuer_differing_only_by_trailing_slash_is_called_out() -> None:
    [mismatch] = explain_mismatch(claims(iss=ISSUER.rstrip("/")), FIC)
    assert mismatch.field == "issuer"
    assert "trailing slash" in mismatch.explanation


def test_other_issuer_is_explained_as_another_cluster() -> None:
    [mismatch] = explain_mismatch(claims(iss="https://other/issuer/"), FIC)
    assert "different OIDC issuer" in mismatch.explanation


def test_wrong_audience_is_reported_with_a_string_aud_claim() -> None:
    [mismatch] = explain_mismatch(claims(aud="api://something-else"), FIC)
    assert mismatch.field == "audience"
    assert mismatch.presented == "api://something-else"


def test_missing_federated_credential_is_its_own_explanation() -> None:
    [mismatch] = explain_mismatch(claims(), None)
    assert mismatch.field == "federated_credential"


def test_known_aadsts_codes_have_a_meaning() -> None:
    assert "issuer, subject and audience" in meaning("AADSTS70021")
    assert meaning("AADSTS1") == ""


def test_every_not_found_code_is_classified_by_meaning_not_by_number() -> None:
    assert refusal("AADSTS70021") == Refusal.NO_MATCH
    assert refusal("AADSTS700211") == Refusal.ISSUER_NOT_FOUND
    assert refusal("AADSTS700213") == Refusal.SUBJECT_NOT_FOUND
    assert refusal("AADSTS7002138") == Refusal.SUBJECT_CASE
    # 70025: "has no configured federated identity credentials", what a new identity's first
    # credential answers until it propagates.
    assert {refusal(f"AADSTS{code}") for code in (70021, 700211, 700213, 7002138, 70025)} <= (
        NOT_FOUND_REFUSALS
    )
    assert refusal("AADSTS50166") == refusal("AADSTS501661") == Refusal.ISSUER_UNREACHABLE
    assert refusal("AADSTS700024") == Refusal.ASSERTION_EXPIRED
    assert refusal("AADSTS700016") == Refusal.CLIENT_NOT_FOUND
    assert refusal("AADSTS90002") == Refusal.TENANT
    assert refusal("AADSTS123") == Refusal.OTHER
    for code in ("AADSTS700211", "AADSTS700213", "AADSTS7002138", "AADSTS700024"):
        assert meaning(code)


def test_a_subject_differing_only_in_case_is_explained_as_case() -> None:
    [mismatch] = explain_mismatch(claims(sub="system:serviceaccount:Payments:api"), FIC)
    assert "case" in mismatch.explanation


def test_past_the_window_an_issuer_refusal_names_the_clusters_issuer() -> None:
    [mismatch] = name_the_strings(
        Refusal.ISSUER_NOT_FOUND,
        claims(),
        cluster_issuer=ISSUER,
        expected_subject="system:serviceaccount:payments:api",
        audience="api://AzureADTokenExchange",
    )
    assert (mismatch.field, mismatch.expected, mismatch.presented) == ("issuer", ISSUER, ISSUER)
    assert "recreate" in mismatch.explanation
