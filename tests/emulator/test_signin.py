"""Entra ID sign-in for people: the authorization code flow the portal's single sign-on uses."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from tests.support.emulator import Emulator, EmulatorControlError

REDIRECT = "https://portal.example/accounts/sso/callback/"
GROUP = "4f1e3f0c-3c4e-4d9e-9a57-0a4e1f6f0d11"


def _authorize(emulator: Emulator, **overrides: Any) -> requests.Response:
    params = {
        "client_id": emulator.portal_client["client_id"],
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "openid profile email",
        "state": "st-1",
        "nonce": "n-1",
        **overrides,
    }
    return requests.get(
        f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/authorize?{urlencode(params)}",
        verify=str(emulator.ca_path),
        allow_redirects=False,
        timeout=10,
    )


def _code(response: requests.Response) -> str:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["Location"])
    query = parse_qs(location.query)
    assert query["state"] == ["st-1"]
    return query["code"][0]


def _redeem(emulator: Emulator, code: str, **overrides: str) -> requests.Response:
    body = {
        "grant_type": "authorization_code",
        "client_id": emulator.portal_client["client_id"],
        "client_secret": emulator.portal_client["client_secret"],
        "code": code,
        "redirect_uri": REDIRECT,
        **overrides,
    }
    return requests.post(
        f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/token",
        data=body,
        verify=str(emulator.ca_path),
        timeout=10,
    )


@pytest.fixture
def dana(emulator: Emulator) -> dict[str, Any]:
    user: dict[str, Any] = emulator.control(
        "POST",
        "users",
        {"username": "Dana@Contoso.example", "name": "Dana Scully", "groups": [GROUP.upper()]},
    )
    return user


def test_a_code_redeems_once_for_an_id_token_signed_with_the_tenant_key(
    emulator: Emulator, dana: dict[str, Any]
) -> None:
    code = _code(_authorize(emulator, login_hint="dana@contoso.example"))
    answer = _redeem(emulator, code)
    assert answer.status_code == 200, answer.text

    keys = requests.get(
        f"{emulator.url}/{emulator.tenant_id}/discovery/v2.0/keys",
        verify=str(emulator.ca_path),
        timeout=10,
    ).json()
    claims = jwt.decode(
        answer.json()["id_token"],
        jwt.PyJWK(keys["keys"][0]).key,
        algorithms=["RS256"],
        audience=emulator.portal_client["client_id"],
        issuer=f"{emulator.url}/{emulator.tenant_id}/v2.0",
    )
    assert claims["oid"] == dana["oid"]
    assert claims["tid"] == emulator.tenant_id
    assert claims["preferred_username"] == "dana@contoso.example"
    assert claims["name"] == "Dana Scully"
    assert claims["nonce"] == "n-1"
    assert claims["groups"] == [GROUP]

    again = _redeem(emulator, code)
    assert again.status_code == 400
    assert "AADSTS70008" in again.json()["error_description"]


def test_without_a_login_hint_the_person_picks_an_account(
    emulator: Emulator, dana: dict[str, Any]
) -> None:
    page = _authorize(emulator)
    assert page.status_code == 200
    assert "dana@contoso.example" in page.text
    assert f'value="{dana["oid"]}"' in page.text
    chosen = requests.post(
        f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/authorize",
        data={
            "client_id": emulator.portal_client["client_id"],
            "response_type": "code",
            "redirect_uri": REDIRECT,
            "scope": "openid",
            "state": "st-1",
            "user_oid": dana["oid"],
        },
        verify=str(emulator.ca_path),
        allow_redirects=False,
        timeout=10,
    )
    assert _redeem(emulator, _code(chosen)).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "aadsts"),
    [
        ({"client_id": "00000000-0000-0000-0000-000000000000"}, "AADSTS700016"),
        ({"response_type": "token"}, "AADSTS700054"),
        ({"scope": "profile"}, "AADSTS90014"),
        ({"redirect_uri": "javascript:alert(1)"}, "AADSTS50011"),
    ],
)
def test_bad_authorize_requests_are_refused(
    emulator: Emulator, dana: dict[str, Any], overrides: dict[str, str], aadsts: str
) -> None:
    answer = _authorize(emulator, login_hint="dana@contoso.example", **overrides)
    assert answer.status_code == 400
    assert aadsts in answer.json()["error_description"]


def test_redeeming_needs_the_same_redirect_uri_the_secret_and_the_pkce_verifier(
    emulator: Emulator, dana: dict[str, Any]
) -> None:
    code = _code(_authorize(emulator, login_hint="dana@contoso.example"))
    wrong_uri = _redeem(emulator, code, redirect_uri="https://evil.example/cb")
    assert wrong_uri.status_code == 400
    assert "AADSTS70000" in wrong_uri.json()["error_description"]

    code = _code(_authorize(emulator, login_hint="dana@contoso.example"))
    assert _redeem(emulator, code, client_secret="nope").status_code == 401

    verifier = "v" * 64
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    code = _code(_authorize(emulator, login_hint="dana@contoso.example", **pkce))
    mismatch = _redeem(emulator, code, code_verifier="w" * 64)
    assert mismatch.status_code == 400
    assert "AADSTS50148" in mismatch.json()["error_description"]
    code = _code(_authorize(emulator, login_hint="dana@contoso.example", **pkce))
    assert _redeem(emulator, code, code_verifier=verifier).status_code == 200


def test_a_user_in_too_many_groups_gets_the_overage_claim_instead(emulator: Emulator) -> None:
    emulator.control("POST", "users", {"username": "busy@contoso.example", "overage": True})
    code = _code(_authorize(emulator, login_hint="busy@contoso.example"))
    claims = jwt.decode(
        _redeem(emulator, code).json()["id_token"], options={"verify_signature": False}
    )
    assert "groups" not in claims
    assert claims["_claim_names"] == {"groups": "src1"}


def test_users_need_a_principal_name_and_a_list_of_groups(emulator: Emulator) -> None:
    with pytest.raises(EmulatorControlError) as no_upn:
        emulator.control("POST", "users", {"username": "dana"})
    assert no_upn.value.status == 400
    with pytest.raises(EmulatorControlError):
        emulator.control("POST", "users", {"username": "d@x.example", "groups": "g1"})
    emulator.control("POST", "users", {"username": "d@x.example", "groups": ["g1"]})
    emulator.control("POST", "users", {"username": "d@x.example", "groups": ["g2"]})
    listed = emulator.control("GET", "users")["value"]
    assert [(u["username"], u["groups"]) for u in listed] == [("d@x.example", ["g2"])]
