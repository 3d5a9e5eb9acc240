"""The approver's inbox in a real browser: "Waiting for me" filtered to high risk, the first
approval of an exception from the request page, then the second approver finds it waiting for
them (four eyes) and approves it from the queue."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from identities.models import IdentityRequest
from identities.policy import RoleDraft
from identities.services import identity_request_create
from tests.browser.conftest import Screenshot, SignIn
from tests.support.people import RESOURCE_GROUP_SCOPE, DraftFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_an_exception_waits_for_two_approvers_who_decide_from_the_page_and_the_inbox(
    requester: Any,
    approver: Any,
    second_approver: Any,
    make_draft: DraftFactory,
    sign_in: SignIn,
    screenshot: Screenshot,
) -> None:
    ordinary = identity_request_create(requester=requester, draft=make_draft())
    exception = identity_request_create(
        requester=requester,
        draft=make_draft(
            service_account="reports",
            app_name="reports",
            roles=(RoleDraft("Contributor", RESOURCE_GROUP_SCOPE),),
            is_exception=True,
            justification="Nightly reports write to every storage account of the group.",
        ),
    )

    # --- sam opens "Waiting for me" and narrows it to high risk ------------------------------
    page = sign_in(approver, next="/approvals/?show=mine")
    expect(page.get_by_role("heading", name="Waiting for me")).to_be_visible()
    expect(page.locator(f"#request-{ordinary.pk}")).to_be_visible()
    expect(page.locator(f"#request-{exception.pk}")).to_be_visible()
    page.get_by_label("Risk").select_option("high")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(f"#request-{ordinary.pk}")).to_have_count(0)
    expect(page.get_by_test_id("queue-count")).to_contain_text("1 request match the filters")
    screenshot(page, "inbox-01-waiting-for-me-high-risk")

    # --- he approves it from the request page ------------------------------------------------
    page.locator(f"#request-{exception.pk}").get_by_role("link", name=f"#{exception.pk}").click()
    decision = page.locator("#decision")
    expect(decision).to_contain_text("Your decision")
    decision.get_by_label("Comment").fill("Reviewed the group's storage accounts.")
    decision.get_by_role("button", name="Approve").click()
    expect(page.locator(".messages")).to_contain_text(f"Approval of request #{exception.pk}")
    expect(page).to_have_url(re.compile(rf"/requests/{exception.pk}/$"))
    expect(page.get_by_test_id("request-status")).to_contain_text("1 of 2 approvals")
    expect(page.locator("#decision")).to_have_count(0)
    screenshot(page, "inbox-02-request-page-after-first-approval")

    # It has left his inbox: it waits for someone else now.
    page.goto("/approvals/?show=mine")
    expect(page.locator(f"#request-{ordinary.pk}")).to_be_visible()
    expect(page.locator(f"#request-{exception.pk}")).to_have_count(0)

    # --- sara finds it waiting for her, four eyes, and approves from the queue ---------------
    second = sign_in(second_approver, next="/approvals/?show=mine")
    item = second.locator(f"#request-{exception.pk}")
    expect(item.get_by_test_id("waiting-because")).to_contain_text(
        "Four eyes: approved by sam, needs a second approver."
    )
    screenshot(second, "inbox-03-second-approver")
    item.get_by_label("Comment").fill("Second pair of eyes: fine for the migration window.")
    item.get_by_role("button", name="Approve").click()
    expect(second.locator(".messages")).to_contain_text(f"Approval of request #{exception.pk}")
    expect(second).to_have_url(re.compile(r"/approvals/\?show=mine$"))
    expect(second.locator(f"#request-{exception.pk}")).to_have_count(0)

    exception.refresh_from_db()
    assert exception.status == IdentityRequest.Status.APPROVED
    assert sorted(exception.approvals.values_list("approver__username", flat=True)) == [
        "sam",
        "sara",
    ]
