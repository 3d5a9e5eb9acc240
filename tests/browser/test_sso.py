"""Signing in with Microsoft Entra ID in a real browser: the login page's button, the emulator's
account picker over HTTPS, and back in the portal with the roles the person's groups map to."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from identities.models import Team
from tests.browser.conftest import VIEWPORT, Screenshot
from tests.support.emulator import Emulator
from tests.ui.test_sso import APPROVERS_GROUP, sso_settings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_an_approver_signs_in_with_entra_id_and_sees_the_approvals_queue(
    emulator: Emulator,
    role_groups: None,
    team: Team,
    chromium: Any,
    live_server: Any,
    screenshot: Screenshot,
) -> None:
    emulator.control(
        "POST",
        "users",
        {"username": "sam.entra@contoso.example", "name": "Sam Entra", "groups": [APPROVERS_GROUP]},
    )
    with override_settings(**sso_settings(emulator)):
        # The emulator's certificate comes from its own CA, which this browser does not trust.
        context = chromium.new_context(
            viewport=VIEWPORT, base_url=live_server.url, ignore_https_errors=True
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto("/accounts/login/?next=/approvals/")
        screenshot(page, "login-with-sso")
        page.get_by_role("link", name="Sign in with Microsoft Entra ID").click()
        page.wait_for_url(f"{emulator.url}/**")
        page.get_by_role("button", name="Sam Entra").click()
        page.wait_for_url("**/approvals/")
        assert page.get_by_role("heading", level=1).inner_text() == "Approval queue"
        screenshot(page, "approvals-after-sso")
        context.close()
    assert (
        User.objects.get(username="sam.entra@contoso.example")
        .groups.filter(name="approvers")
        .exists()
    )
