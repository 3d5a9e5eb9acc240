"""Every page fits a phone's width: nothing scrolls sideways but wide tables and code blocks,
which scroll inside their own box."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.machines import trust_rule_create
from identities.models import CatalogRole
from identities.services import identity_request_create
from tests.browser.conftest import Screenshot, SignIn
from tests.support.people import DraftFactory
from tests.ui.support import approve, provisioned

# serialized_rollback: the flush after each test then skips post_migrate, so the tests that
# restore the migrated rows (content types, groups, the catalog) after these still can.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PHONE = {"width": 390, "height": 844}


def test_pages_fit_a_phone_screen(
    catalog: dict[str, CatalogRole],
    requester: Any,
    approver: Any,
    team: Any,
    make_draft: DraftFactory,
    sign_in: SignIn,
    screenshot: Screenshot,
    django_capture_on_commit_callbacks: Any,
) -> None:
    ready = provisioned(
        approve(
            identity_request_create(requester=requester, draft=make_draft()),
            approver,
            django_capture_on_commit_callbacks,
        )
    )
    pending = identity_request_create(
        requester=requester, draft=make_draft(service_account="reports", app_name="reports")
    )
    trust_rule_create(
        actor=requester,
        team=team,
        service_principal="deploy-pipeline",
        name="production deploys",
        issuer="https://token.actions.githubusercontent.com",
        audience="api://workload-identity-portal",
        subject="repo:contoso/payments:environment:production",
        claims={"repository": "contoso/payments"},
        scopes=["read", "request"],
    )
    pages = {
        requester: [
            "/",
            "/requests/new/",
            f"/requests/{ready.pk}/",
            "/requests/",
            "/identities/",
            f"/identities/{ready.identity_id}/",
            f"/identities/{ready.identity_id}/changes/new/",
            "/audit/",
            "/tokens/",
            "/pipelines/",
        ],
        approver: ["/approvals/", f"/requests/{pending.pk}/"],
    }
    shots = {"/requests/new/": "15-phone-new-request", f"/requests/{ready.pk}/": "16-phone-request"}
    for user, urls in pages.items():
        page = sign_in(user)
        page.set_viewport_size(PHONE)
        for url in urls:
            page.goto(url)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            culprits = page.evaluate(
                """Array.from(document.querySelectorAll('body *'))
                  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                  .filter(e => !e.closest('.table-wrap, pre'))
                  .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"""
            )
            assert overflow <= 0, f"{url} is {overflow}px wider than the screen: {culprits}"
            if url in shots:
                screenshot(page, shots[url])
