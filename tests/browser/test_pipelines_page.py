"""The pipelines page in a real browser: a requester registers a trust rule from the labels
alone, sees whom it acts as, then disables it after confirming."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import TrustRule
from tests.browser.conftest import SignIn

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_a_requester_registers_and_disables_a_trust_rule(
    requester: Any, team: Any, sign_in: SignIn
) -> None:
    page = sign_in(requester, next="/pipelines/")
    page.get_by_role("link", name="Pipelines").click()
    expect(page.get_by_role("heading", name="Pipelines", exact=True)).to_be_visible()
    expect(page.get_by_text("No trust rules yet.")).to_be_visible()

    form = page.locator("form", has=page.get_by_role("button", name="Register rule"))
    form.get_by_label("Team", exact=True).select_option("payments")
    form.get_by_label("Service principal").fill("deploy-pipeline")
    form.get_by_label("Name", exact=True).fill("production deploys")
    form.get_by_label("Issuer").fill("https://token.actions.githubusercontent.com")
    form.get_by_label("Audience").fill("api://workload-identity-portal")
    form.get_by_label("Exact claims").fill("repository=contoso/payments")
    form.get_by_label("Or a subject pattern").fill("*")
    form.get_by_label("read: see the team's requests").check()
    form.get_by_role("button", name="Register rule").click()

    # A pattern matching everyone is refused, with the reason beside the field.
    expect(page.get_by_text("A pattern has a literal start")).to_be_visible()
    form = page.locator("form", has=page.get_by_role("button", name="Register rule"))
    form.get_by_label("Or a subject pattern").fill("repo:contoso/payments:environment:*")
    form.get_by_label("read: see the team's requests").check()
    form.get_by_role("button", name="Register rule").click()

    expect(page.locator(".messages")).to_contain_text("svc:payments/deploy-pipeline")
    row = page.get_by_role("row", name="production deploys")
    expect(row).to_contain_text("svc:payments/deploy-pipeline")
    expect(row).to_contain_text("sub ~ repo:contoso/payments:environment:*")

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Disable production deploys").click()
    expect(page.get_by_role("row", name="production deploys")).to_contain_text("disabled")
    assert not TrustRule.objects.get().is_active
