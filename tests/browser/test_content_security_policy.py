"""Every page runs under the strict Content-Security-Policy without one violation: no inline
script or style attribute left in a template, the admin or the API docs, and the page that
JavaScript updates (request progress, the live policy check) stays clean too."""

from __future__ import annotations

from typing import Any

import pytest

from identities.models import CatalogRole
from identities.services import identity_request_create
from tests.browser.conftest import SignIn
from tests.support.people import DraftFactory
from tests.ui.support import approve, provisioned

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

# Collects violations from the first script that runs on each page, before the portal's own.
LISTEN = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(
    `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`
  );
});
"""


def visit_all(page: Any, urls: list[str], problems: list[str]) -> None:
    """Visit `urls` and collect every CSP violation (events and console reports)."""
    page.context.add_init_script(LISTEN)
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    for url in urls:
        response = page.goto(url)
        policy = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy, f"{url}: {policy!r}"
        assert "'unsafe-inline'" not in policy
        page.wait_for_load_state("networkidle")
        problems += [f"{url}: {v}" for v in page.evaluate("window.__csp || []")]


def test_no_page_violates_the_content_security_policy(
    catalog: dict[str, CatalogRole],
    requester: Any,
    approver: Any,
    admin_user: Any,
    make_draft: DraftFactory,
    sign_in: SignIn,
    chromium: Any,
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
    pending = identity_request_create(
        requester=requester, draft=make_draft(service_account="reports", app_name="reports")
    )
    problems: list[str] = []

    anonymous = chromium.new_context(base_url=live_server.url).new_page()
    visit_all(anonymous, ["/accounts/login/", "/no-such-page/"], problems)
    anonymous.context.close()

    page = sign_in(requester)
    visit_all(
        page,
        [
            "/",
            "/requests/new/",
            f"/requests/{ready.pk}/",
            f"/requests/{pending.pk}/",
            "/requests/",
            "/identities/",
            f"/identities/{ready.identity_id}/",
            "/tokens/",
            "/pipelines/",
            "/inbox/",
            "/inbox/preferences/",
            "/webhooks/",
            "/api/docs/",
        ],
        problems,
    )
    # The form's live policy check and its repeating rows rewrite parts of the page.
    page.goto("/requests/new/")
    page.get_by_label("Namespace", exact=True).fill("not-ours")
    page.get_by_label("App name").fill("csp-check")
    page.wait_for_load_state("networkidle")
    problems += [f"new request form: {v}" for v in page.evaluate("window.__csp || []")]

    # The approver's inbox holds the filings above (with their request descriptions).
    visit_all(sign_in(approver), ["/approvals/", "/audit/", "/inbox/"], problems)
    visit_all(
        sign_in(admin_user, next="/admin/"),
        [
            "/admin/",
            "/admin/auth/user/",
            f"/admin/auth/user/{requester.pk}/change/",
            "/admin/portal/trustrule/",
        ],
        problems,
    )

    assert problems == []
