"""Single sign-on with Entra ID: the whole authorization code flow against the emulator's Entra
over HTTPS (the portal's views and backend, the emulator's authorize and token endpoints, the
real ID token signature check), and the mapping of Entra groups to portal roles and teams.

ID tokens the emulator's Entra never sends (a guest's `idp`, no `preferred_username`, China's
issuer, a clock that differs) are minted with the local issuer's key (tests.support.oidc_issuer)
and answered by a small token endpoint (`entra` below); the portal's side is the same flow."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, override_settings

from accounts.machines import service_token_create
from accounts.models import SsoAccount
from accounts.sso import EntraIdBackend, SignInRefused, id_token_problems, parse_group_map
from identities import roles
from identities.models import AuditEvent, Team, TeamMembership
from identities.services import user_role_grant
from tests.support.emulator import Emulator
from tests.support.oidc_issuer import LocalIssuer

pytestmark = pytest.mark.django_db

APPROVERS_GROUP = "0b8f6a1e-6f7e-4c1b-9d4e-3c2a1b0f9e01"
DEVELOPERS_GROUP = "0b8f6a1e-6f7e-4c1b-9d4e-3c2a1b0f9e02"
PAYMENTS_GROUP = "0b8f6a1e-6f7e-4c1b-9d4e-3c2a1b0f9e03"
UNMAPPED_GROUP = "0b8f6a1e-6f7e-4c1b-9d4e-3c2a1b0f9e04"
GROUP_ROLES = f"{APPROVERS_GROUP}=approvers, {DEVELOPERS_GROUP}=requesters"
GROUP_TEAMS = f"{PAYMENTS_GROUP}=payments"


def sso_settings(emulator: Emulator, **extra: Any) -> dict[str, Any]:
    return {
        "OIDC_RP_CLIENT_ID": emulator.portal_client["client_id"],
        "OIDC_RP_CLIENT_SECRET": emulator.portal_client["client_secret"],
        "ENTRA_TENANT_ID": emulator.tenant_id,
        "ENTRA_AUTHORITY_HOST": emulator.url,
        "OIDC_VERIFY_SSL": str(emulator.ca_path),
        "SSO_GROUP_ROLES": GROUP_ROLES,
        "SSO_GROUP_TEAMS": GROUP_TEAMS,
        **extra,
    }


@pytest.fixture
def sso(emulator: Emulator, role_groups: None, team: Team) -> Iterator[Emulator]:
    with override_settings(**sso_settings(emulator)):
        yield emulator


SignIn = Callable[..., Any]


@pytest.fixture
def sign_in(emulator: Emulator) -> SignIn:
    """Run the browser's part of the flow with a test client and plain HTTPS to the emulator;
    returns the client and the portal's final answer."""

    def run(username: str, *, client: Client | None = None, next_url: str = "") -> Any:
        client = client or Client()
        start = client.get("/accounts/sso/start/" + (f"?next={next_url}" if next_url else ""))
        assert start.status_code == 302
        authorize = start["Location"]
        assert authorize.startswith(f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/authorize")
        signed_in = requests.get(
            f"{authorize}&login_hint={username}",
            verify=str(emulator.ca_path),
            allow_redirects=False,
            timeout=10,
        )
        assert signed_in.status_code == 302, signed_in.text
        back = urlsplit(signed_in.headers["Location"])
        assert back.path == "/accounts/sso/callback/"
        answer = client.get(f"{back.path}?{back.query}")
        return client, answer

    return run


def role_names(user: User) -> set[str]:
    return set(User.objects.get(pk=user.pk).groups.values_list("name", flat=True))


def directory_user(emulator: Emulator, username: str, *groups: str, **extra: Any) -> str:
    user: dict[str, Any] = emulator.control(
        "POST", "users", {"username": username, "groups": list(groups), **extra}
    )
    return str(user["oid"])


def test_first_sign_in_creates_a_linked_account_with_the_mapped_roles_and_team(
    sso: Emulator, sign_in: SignIn
) -> None:
    oid = directory_user(
        sso, "dana@contoso.example", DEVELOPERS_GROUP, PAYMENTS_GROUP, name="Dana Scully"
    )

    client, answer = sign_in("dana@contoso.example", next_url="/requests/")

    assert answer.status_code == 302
    assert answer["Location"] == "/requests/"
    dana = User.objects.get(username="dana@contoso.example")
    assert not dana.has_usable_password()
    assert (dana.first_name, dana.last_name, dana.email) == (
        "Dana",
        "Scully",
        "dana@contoso.example",
    )
    link = SsoAccount.objects.get(user=dana)
    assert (link.tenant_id, link.object_id) == (sso.tenant_id, oid)
    assert role_names(dana) == {roles.REQUESTERS}
    assert TeamMembership.objects.filter(user=dana, team__name="payments").exists()
    assert client.get("/requests/").status_code == 200
    synced = AuditEvent.objects.get(action="user.directory_synced")
    assert synced.data["roles_granted"] == ["requesters"]
    assert synced.data["teams_joined"] == ["payments"]
    assert synced.data["object_id"] == oid
    linked = AuditEvent.objects.get(action="user.sso_linked")
    assert (linked.data["object_id"], linked.data["new_account"]) == (oid, True)
    assert {"user.role_granted", "teammembership.created"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )


def test_each_sign_in_follows_group_changes_and_leaves_unmapped_roles_alone(
    sso: Emulator, sign_in: SignIn
) -> None:
    directory_user(sso, "erin@contoso.example", APPROVERS_GROUP, PAYMENTS_GROUP)
    sign_in("erin@contoso.example")
    erin = User.objects.get(username="erin@contoso.example")
    assert role_names(erin) == {roles.APPROVERS}
    # An admin makes erin an auditor by hand: the mapping does not name auditors.
    user_role_grant(actor=None, user=erin, role=roles.AUDITORS)

    directory_user(sso, "erin@contoso.example", UNMAPPED_GROUP)
    _, answer = sign_in("erin@contoso.example")

    assert answer.status_code == 302
    erin = User.objects.get(pk=erin.pk)
    assert role_names(erin) == {roles.AUDITORS}
    assert not TeamMembership.objects.filter(user=erin).exists()
    last = AuditEvent.objects.filter(action="user.directory_synced").order_by("-id")[0]
    assert last.data["roles_revoked"] == ["approvers"]
    assert last.data["teams_left"] == ["payments"]
    assert User.objects.filter(username="erin@contoso.example").count() == 1


def test_a_local_account_with_the_same_name_is_linked_but_never_taken_over(
    sso: Emulator, sign_in: SignIn
) -> None:
    local = User.objects.create_user("frank@contoso.example", password="a-long-local-pass-42")
    directory_user(sso, "frank@contoso.example", DEVELOPERS_GROUP)
    sign_in("frank@contoso.example")
    assert SsoAccount.objects.get(user=local).object_id

    # Another Entra user (a new object id) now claims the same name: refused, nothing changes.
    sso.control(
        "POST",
        "users",
        {"username": "frank@contoso.example", "oid": "9" * 8 + "-0000-0000-0000-" + "9" * 12},
    )
    client, answer = sign_in("frank@contoso.example")
    assert answer.status_code == 302
    assert answer["Location"] == "/accounts/login/"
    page = client.get("/accounts/login/")
    assert "linked to another Entra ID user" in page.content.decode()
    assert "_auth_user_id" not in client.session
    assert SsoAccount.objects.count() == 1


def test_a_token_from_another_issuer_is_refused_although_its_signature_is_valid(
    emulator: Emulator, role_groups: None, sign_in: SignIn, caplog: pytest.LogCaptureFixture
) -> None:
    directory_user(emulator, "gina@contoso.example", DEVELOPERS_GROUP)
    base = f"{emulator.url}/{emulator.tenant_id}"
    settings = sso_settings(
        emulator,
        ENTRA_AUTHORITY_HOST="https://login.microsoftonline.com",
        OIDC_OP_AUTHORIZATION_ENDPOINT=f"{base}/oauth2/v2.0/authorize",
        OIDC_OP_TOKEN_ENDPOINT=f"{base}/oauth2/v2.0/token",
        OIDC_OP_JWKS_ENDPOINT=f"{base}/discovery/v2.0/keys",
    )
    with override_settings(**settings):
        client, answer = sign_in("gina@contoso.example")
        page = client.get("/accounts/login/").content.decode()
    assert answer["Location"] == "/accounts/login/"
    assert "Single sign-on failed" in page
    assert "expected &#x27;https://login.microsoftonline.com/" in page
    assert not User.objects.filter(username="gina@contoso.example").exists()
    assert "issuer is" in caplog.text
    assert "eyJ" not in caplog.text


def test_a_user_whose_groups_did_not_fit_in_the_token_is_told_why(
    sso: Emulator, sign_in: SignIn
) -> None:
    directory_user(sso, "hal@contoso.example", overage=True)
    client, answer = sign_in("hal@contoso.example")
    assert answer["Location"] == "/accounts/login/"
    assert "groupMembershipClaims" in client.get("/accounts/login/").content.decode()
    assert not User.objects.filter(username="hal@contoso.example").exists()


def test_replaying_the_callback_does_not_sign_anyone_in(sso: Emulator, emulator: Emulator) -> None:
    directory_user(sso, "ivy@contoso.example", DEVELOPERS_GROUP)
    client = Client()
    authorize = client.get("/accounts/sso/start/")["Location"]
    back = urlsplit(
        requests.get(
            f"{authorize}&login_hint=ivy@contoso.example",
            verify=str(emulator.ca_path),
            allow_redirects=False,
            timeout=10,
        ).headers["Location"]
    )
    assert client.get(f"{back.path}?{back.query}")["Location"] == "/"
    # The same code and state in a different browser session: no state there, refused.
    stranger = Client()
    answer = stranger.get(f"{back.path}?{back.query}")
    assert answer.status_code in {302, 400}
    assert "_auth_user_id" not in stranger.session


def test_the_login_page_offers_entra_only_when_configured(sso: Emulator) -> None:
    assert "Sign in with Microsoft Entra ID" in Client().get("/accounts/login/").content.decode()
    with override_settings(OIDC_RP_CLIENT_ID=""):
        page = Client().get("/accounts/login/").content.decode()
        assert "Sign in with Microsoft Entra ID" not in page
        assert Client().get("/accounts/sso/start/").status_code == 404
        assert Client().get("/accounts/sso/callback/?code=x&state=y").status_code == 404
    # Local accounts keep working next to SSO.
    User.objects.create_user("local", password="a-long-local-pass-42")
    assert Client().login(username="local", password="a-long-local-pass-42")


def test_id_token_claims_are_checked_for_issuer_audience_tenant_and_object_id(
    sso: Emulator,
) -> None:
    good = {
        "iss": f"{sso.url}/{sso.tenant_id}/v2.0",
        "aud": sso.portal_client["client_id"],
        "tid": sso.tenant_id,
        "oid": "o",
        "preferred_username": "x@y.example",
    }
    assert id_token_problems(good) == []
    assert "audience" in id_token_problems({**good, "aud": "someone-else"})[0]
    assert "tenant" in id_token_problems({**good, "tid": "other"})[0]
    assert "object id" in id_token_problems({k: v for k, v in good.items() if k != "oid"})[0]
    assert "issuer" in id_token_problems({**good, "iss": "https://sts.windows.net/x/"})[0]


def test_group_maps_parse_and_bad_configuration_stops_the_portal(emulator: Emulator) -> None:
    assert parse_group_map("A=approvers; a=auditors, b=payments", "X") == {
        "a": {"approvers", "auditors"},
        "b": {"payments"},
    }
    with pytest.raises(ValueError, match="SSO_GROUP_ROLES: 'nonsense'"):
        parse_group_map("nonsense", "SSO_GROUP_ROLES")
    bad_role = sso_settings(emulator, SSO_GROUP_ROLES="g=superheroes")
    with override_settings(**bad_role), pytest.raises(SystemCheckError, match="superheroes"):
        call_command("check")
    no_secret = sso_settings(emulator, OIDC_RP_CLIENT_SECRET="")
    with (
        override_settings(**no_secret),
        pytest.raises(SystemCheckError, match="OIDC_RP_CLIENT_SECRET is required"),
    ):
        call_command("check")


def test_a_sign_in_never_links_to_a_service_principal(
    sso: Emulator, requester: User, team: Team
) -> None:
    """Entra's user principal names cannot hold ':' or '/' (the emulator refuses them too), so
    this calls the backend's linking step directly: the guard holds whatever the claims say."""
    service_token_create(
        actor=requester,
        team=team,
        service_principal="deploy",
        name="ci",
        scopes=["read"],
        expires_at=None,
    )
    claims = {"tid": sso.tenant_id, "oid": "7" * 8 + "-0000-0000-0000-" + "7" * 12}

    with pytest.raises(SignInRefused, match="is a service principal"):
        EntraIdBackend().create_user({**claims, "preferred_username": "svc:payments/deploy"})
    assert not SsoAccount.objects.exists()


# --- Tokens the emulator's Entra never sends ---------------------------------------------------

TENANT = "3f6b2c1a-8d4e-4f5a-9b7c-1e2d3c4b5a60"
CLIENT_ID = "5c3e9a7b-2f1d-4e8c-a6b4-0d9f8e7c6b5a"
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
# A guest authenticated by its home tenant (a B2B guest) or by a Microsoft account.
OTHER_TENANT_IDP = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
MICROSOFT_ACCOUNT_IDP = "live.com"


@dataclass
class MintedEntra:
    """Entra ID's token endpoint, answering the ID token the test minted for this sign-in with
    the local issuer's key (published at the issuer's JWKS URL, which the portal fetches)."""

    issuer: LocalIssuer
    token_url: str = ""
    id_token: str = ""

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": "unused-client-secret",
            "ENTRA_TENANT_ID": TENANT,
            "ENTRA_AUTHORITY_HOST": PUBLIC_AUTHORITY,
            "OIDC_OP_TOKEN_ENDPOINT": self.token_url,
            "OIDC_OP_JWKS_ENDPOINT": f"{self.issuer.url}/.well-known/jwks",
            "SSO_GROUP_ROLES": GROUP_ROLES,
            "SSO_GROUP_TEAMS": GROUP_TEAMS,
            **extra,
        }

    def sign_in(self, username: str | None, **claims: Any) -> tuple[Client, Any]:
        """Start at the portal, mint what Entra answers a member of TENANT (valid from now for
        five minutes, with the request's nonce) with `claims` on top (None drops a claim), and
        come back to the callback; returns the client and the portal's answer."""
        client = Client()
        start = client.get("/accounts/sso/start/")
        assert start.status_code == 302
        query = parse_qs(urlsplit(start["Location"]).query)
        entra_claims = {
            "iss": f"{PUBLIC_AUTHORITY}/{TENANT}/v2.0",
            "aud": CLIENT_ID,
            "tid": TENANT,
            "oid": str(uuid.uuid4()),
            "sub": uuid.uuid4().hex,
            "preferred_username": username,
            "email": username,
            "name": "Pat Example",
            "nonce": query["nonce"][0],
            "groups": [DEVELOPERS_GROUP],
            "ver": "2.0",
            # The local issuer's defaults are a pipeline's claims: none of them here.
            "repository": None,
            "ref": None,
            "environment": None,
            "jti": None,
        }
        self.id_token = self.issuer.mint(**{**entra_claims, **claims})
        answer = client.get(f"/accounts/sso/callback/?code=a-code&state={query['state'][0]}")
        return client, answer


@pytest.fixture
def entra(oidc_issuer: LocalIssuer, role_groups: None, team: Team) -> Iterator[MintedEntra]:
    minted = MintedEntra(issuer=oidc_issuer)

    class TokenEndpoint(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps(
                {"token_type": "Bearer", "access_token": "unused", "id_token": minted.id_token}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    minted.token_url = f"http://127.0.0.1:{server.server_address[1]}/{TENANT}/oauth2/v2.0/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with override_settings(**minted.settings()):
            yield minted
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def refusal(client: Client, answer: Any) -> str:
    """The login page the refused sign-in came back to (asserting nobody is signed in)."""
    assert answer.status_code == 302
    assert answer["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session
    page: str = client.get("/accounts/login/").content.decode()
    assert "Single sign-on failed" in page
    return page


def test_a_token_without_preferred_username_is_refused_and_its_email_names_no_account(
    entra: MintedEntra, caplog: pytest.LogCaptureFixture
) -> None:
    """Entra: `email` "isn't guaranteed to be correct ... Never use it for authorization"."""
    local = User.objects.create_user("frank@contoso.example", password="a-long-local-pass-42")

    client, answer = entra.sign_in(None, email="frank@contoso.example")

    page = refusal(client, answer)
    assert "no &#x27;preferred_username&#x27; claim" in page
    assert not SsoAccount.objects.exists()
    assert list(User.objects.values_list("pk", flat=True)) == [local.pk]
    assert not AuditEvent.objects.filter(action="user.sso_linked").exists()
    assert "preferred_username" in caplog.text
    assert "eyJ" not in caplog.text


def test_a_guest_gets_a_new_account_but_never_a_local_account_of_the_same_name(
    entra: MintedEntra, caplog: pytest.LogCaptureFixture
) -> None:
    local = User.objects.create_user("frank@contoso.example", password="a-long-local-pass-42")

    client, answer = entra.sign_in("mallory@fabrikam.example", idp=MICROSOFT_ACCOUNT_IDP)
    assert answer["Location"] == "/"
    mallory = User.objects.get(username="mallory@fabrikam.example")
    assert client.session["_auth_user_id"] == str(mallory.pk)
    assert not mallory.has_usable_password()
    assert SsoAccount.objects.filter(user=mallory).exists()

    client, answer = entra.sign_in("frank@contoso.example", idp=OTHER_TENANT_IDP)
    page = refusal(client, answer)
    assert "signed in as a guest" in page
    assert "an administrator must link the account" in page
    assert not SsoAccount.objects.filter(user=local).exists()
    linked = AuditEvent.objects.get(action="user.sso_linked")
    assert (linked.data["user"], linked.data["new_account"]) == ("mallory@fabrikam.example", True)
    assert "an administrator must link the account" in caplog.text


@pytest.mark.parametrize(
    "idp",
    [None, f"{PUBLIC_AUTHORITY}/{TENANT}/v2.0", f"https://sts.windows.net/{TENANT}/"],
    ids=["no-idp", "idp-is-the-issuer", "idp-is-this-tenant-v1"],
)
def test_a_member_links_to_a_local_account_after_a_guest_of_that_name_was_refused(
    entra: MintedEntra, idp: str | None
) -> None:
    local = User.objects.create_user("frank@contoso.example", password="a-long-local-pass-42")
    refusal(*entra.sign_in("frank@contoso.example", idp=OTHER_TENANT_IDP))

    member_oid = str(uuid.uuid4())
    client, answer = entra.sign_in("frank@contoso.example", oid=member_oid, idp=idp)

    assert answer["Location"] == "/"
    assert client.session["_auth_user_id"] == str(local.pk)
    assert SsoAccount.objects.get().object_id == member_oid
    assert SsoAccount.objects.get().user == local
    linked = AuditEvent.objects.get(action="user.sso_linked")
    assert (linked.data["object_id"], linked.data["new_account"]) == (member_oid, False)
    assert role_names(local) == {roles.REQUESTERS}


def test_china_cloud_tokens_are_checked_against_entra_s_partner_issuer(
    entra: MintedEntra,
) -> None:
    """Entra in China signs in at login.chinacloudapi.cn but issues
    https://login.partner.microsoftonline.cn/<tenant>/v2.0 (Azure/azure-dev#5912)."""
    with override_settings(ENTRA_AUTHORITY_HOST="https://login.chinacloudapi.cn"):
        authorize = Client().get("/accounts/sso/start/")["Location"]
        assert authorize.startswith(f"https://login.chinacloudapi.cn/{TENANT}/oauth2/v2.0/")
        partner = f"https://login.partner.microsoftonline.cn/{TENANT}/v2.0"

        client, answer = entra.sign_in("li@contoso.example", iss=partner)
        assert answer["Location"] == "/"
        assert client.session["_auth_user_id"]

        client, answer = entra.sign_in(
            "wang@contoso.example", iss=f"https://login.chinacloudapi.cn/{TENANT}/v2.0"
        )
        page = refusal(client, answer)
        assert f"expected &#x27;{partner}&#x27;" in page
    assert not User.objects.filter(username="wang@contoso.example").exists()


def test_a_tenant_id_in_upper_case_still_matches_the_issuer_entra_writes(
    entra: MintedEntra,
) -> None:
    with override_settings(ENTRA_TENANT_ID=TENANT.upper()):
        client, answer = entra.sign_in("dana@contoso.example")
        assert answer["Location"] == "/"
        assert client.session["_auth_user_id"]
        call_command("check")  # an upper-case GUID is still a GUID
    assert SsoAccount.objects.get().tenant_id == TENANT


def test_a_tenant_given_as_a_domain_name_stops_the_portal(emulator: Emulator) -> None:
    """Entra takes a domain name in the endpoints, but the ID token's iss and tid carry the
    GUID: every sign-in would be refused."""
    domain = sso_settings(emulator, ENTRA_TENANT_ID="contoso.onmicrosoft.com")
    with (
        override_settings(**domain),
        pytest.raises(SystemCheckError, match="ENTRA_TENANT_ID must be the tenant id, a GUID"),
    ):
        call_command("check")


def test_clock_skew_within_a_minute_is_accepted_and_beyond_it_refused_with_a_reason(
    entra: MintedEntra,
) -> None:
    now = int(time.time())
    client, answer = entra.sign_in("ahead@contoso.example", iat=now + 30, nbf=now + 30)
    assert answer["Location"] == "/"
    assert client.session["_auth_user_id"]

    client, answer = entra.sign_in("far@contoso.example", iat=now + 300, nbf=now + 300)
    assert "is not valid yet" in refusal(client, answer)
    assert not User.objects.filter(username="far@contoso.example").exists()


def test_an_expired_token_is_refused_with_a_reason_not_a_server_error(
    entra: MintedEntra, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    client, answer = entra.sign_in(
        "late@contoso.example", iat=now - 3900, nbf=now - 3900, exp=now - 300
    )

    assert "the ID token from Entra ID has expired" in refusal(client, answer)
    assert not User.objects.filter(username="late@contoso.example").exists()
    assert "has expired" in caplog.text
    assert "eyJ" not in caplog.text
