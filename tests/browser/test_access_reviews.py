"""Access reviews and transfers in a real browser (system Chromium through Playwright): security
opens a review from the form, the team finds its item in its "to review" list and attests it,
the chart is drawn, the evidence downloads; a transfer goes through its three steps. Every page
visited runs under the strict CSP without a violation."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import AccessReviewCampaign, AuditEvent, CatalogRole, OwnershipTransfer
from identities.services import identity_request_create
from tests.browser.conftest import SignIn
from tests.browser.test_content_security_policy import LISTEN
from tests.support.people import DraftFactory
from tests.ui.support import approve, provisioned

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def _violations(page: Any) -> list[str]:
    return list(page.evaluate("window.__csp || []"))


def test_a_review_is_opened_attested_and_exported_and_a_transfer_completed(
    catalog: dict[str, CatalogRole],
    requester: Any,
    outsider: Any,
    approver: Any,
    make_draft: DraftFactory,
    sign_in: SignIn,
    live_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    ready = provisioned(
        approve(
            identity_request_create(requester=requester, draft=make_draft()),
            approver,
            django_capture_on_commit_callbacks,
        )
    )
    problems: list[str] = []

    security = sign_in(approver, next="/access-reviews/")
    security.context.add_init_script(LISTEN)
    security.reload()
    security.get_by_label("Name", exact=True).fill("Q4 recertification")
    security.get_by_label("Due", exact=True).fill("2099-01-01T12:00")
    security.get_by_label("Revoke automatically when overdue").check()
    security.get_by_role("button", name="Open the review").click()
    security.wait_for_url("**/access-reviews/*/")
    campaign = AccessReviewCampaign.objects.get()
    assert security.get_by_text("1 identities to attest").is_visible()
    problems += _violations(security)

    team = sign_in(requester, next=f"/access-reviews/{campaign.pk}/")
    team.context.add_init_script(LISTEN)
    team.reload()
    assert team.locator("svg[role=img] rect").count() >= 2  # the chart: all teams + payments
    row = team.locator(f"#item-{campaign.items.get().pk}")
    row.get_by_label("Still needed").check()
    row.get_by_label("Comment").fill("Checkout still reads its secrets.")
    row.get_by_role("button", name="Attest").click()
    team.wait_for_url(f"**/access-reviews/{campaign.pk}/")
    assert team.get_by_text("Nothing waits for you in this review.").is_visible()
    assert team.get_by_text("100 %").is_visible()
    with team.expect_download() as download:
        team.get_by_role("link", name="Evidence (CSV)").click()
    text = download.value.path().read_text()
    event = AuditEvent.objects.get(action="access_review.attested")
    assert f",{event.pk},{event.hash}," in text
    problems += _violations(team)

    team.goto(f"/identities/{ready.identity_id}/")
    team.get_by_label("Receiving team").select_option("search")
    team.locator("#id_transfer-justification").fill("Search runs checkout now.")
    team.get_by_role("button", name="Ask for the transfer").click()
    team.wait_for_url("**/transfers/")
    problems += _violations(team)
    transfer = OwnershipTransfer.objects.get()

    receiving = sign_in(outsider, next="/transfers/")
    receiving.get_by_role("button", name="Consent to receive it").click()
    receiving.wait_for_url("**/transfers/")
    security.goto("/transfers/")
    security.get_by_role("button", name="Approve").click()
    security.wait_for_url("**/transfers/")
    transfer.refresh_from_db()
    assert transfer.status == "completed"
    problems += _violations(security)
    assert problems == []
