"""Accessibility by keyboard and for screen readers, beyond what axe-core checks on every page
(tests/support/axe.py): axe itself catches a planted violation; the request form is filled and
filed with the keyboard alone; the request page's live updates keep keyboard focus and announce
each step's change."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from identities.models import CatalogRole, IdentityRequest
from identities.services import identity_request_create, identity_request_decommission_create
from provisioning.models import ProvisioningStep, StepStatus
from tests.browser.conftest import SignIn
from tests.support.axe import AxeReport
from tests.support.people import VAULT_SCOPE, DraftFactory
from tests.ui.support import approve, provisioned

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_axe_runs_on_the_pages_and_catches_a_serious_violation(
    catalog: dict[str, CatalogRole], requester: Any, sign_in: SignIn
) -> None:
    page = sign_in(requester, "/requests/")
    page.evaluate(
        """() => { const img = document.createElement('img');
                   img.id = 'planted'; img.src = '/static/portal/favicon.svg';
                   document.querySelector('main').appendChild(img); }"""
    )
    report = AxeReport()

    report.check_now(page)

    assert report.pages == ["/requests/"]
    assert any("critical image-alt" in problem for problem in report.problems), report.problems
    page.evaluate("() => document.getElementById('planted').remove()")


def _focused(page: Any) -> dict[str, str]:
    return dict(
        page.evaluate(
            """() => { const e = document.activeElement;
                       return {id: e.id || '', tag: e.tagName, text: (e.textContent || '').trim(),
                               type: e.type || ''}; }"""
        )
    )


def _choose_with_arrows(page: Any, element_id: str, label: str) -> None:
    """Move a focused <select> to the option `label` (its value or text) with the arrow keys."""
    for _ in range(40):
        value, text = page.evaluate(
            f"() => {{ const s = document.getElementById('{element_id}');"
            " const o = s.options[s.selectedIndex]; return o ? [o.value, o.text] : ['', '']; }"
        )
        if label in (value, text.strip()):
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"{element_id}: no option {label!r} reachable with the arrow keys")


def test_the_request_form_is_filled_and_filed_with_the_keyboard_alone(
    catalog: dict[str, CatalogRole], requester: Any, sign_in: SignIn, cluster: Any
) -> None:
    page = sign_in(requester, "/requests/new/")
    page.locator("body").focus()
    typed = {
        "id_namespace": "payments",
        "id_service_account": "checkout",
        "id_app_name": "checkout",
        "id_roles-0-scope": VAULT_SCOPE,
        "id_tags": "costCentre=cc-4711",
        "id_justification": "Checkout reads its payment provider secrets from Key Vault.",
    }
    chosen = {"id_cluster": cluster.name, "id_roles-0-role": "Key Vault Secrets User"}
    visited: list[str] = []
    for _ in range(80):
        page.keyboard.press("Tab")
        focused = _focused(page)
        visited.append(focused["id"] or focused["text"][:20])
        if focused["id"] in typed:
            page.keyboard.type(typed.pop(focused["id"]))
        elif focused["id"] in chosen:
            _choose_with_arrows(page, focused["id"], chosen.pop(focused["id"]))
        elif focused["tag"] == "BUTTON" and focused["text"] == "File request":
            assert not typed and not chosen, f"not reached by Tab: {typed} {chosen} ({visited})"
            page.keyboard.press("Enter")
            break
    else:
        raise AssertionError(f"Tab never reached the File request button: {visited}")

    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    identity_request = IdentityRequest.objects.get()
    assert (identity_request.namespace, identity_request.service_account) == (
        "payments",
        "checkout",
    )
    assert [r.role.name for r in identity_request.roles.all()] == ["Key Vault Secrets User"]


def test_live_progress_keeps_keyboard_focus_and_announces_every_step(
    catalog: dict[str, CatalogRole],
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
    sign_in: SignIn,
    django_capture_on_commit_callbacks: Any,
) -> None:
    identity_request = approve(
        identity_request_create(requester=requester, draft=make_draft()),
        approver,
        django_capture_on_commit_callbacks,
    )
    steps = [
        ProvisioningStep.objects.create(
            identity_request=identity_request,
            key=key,
            label=label,
            position=position,
            status=StepStatus.PENDING,
        )
        for position, (key, label) in enumerate(
            [("uami", "Managed identity"), ("fic", "Federated credential")]
        )
    ]
    page = sign_in(requester, f"/requests/{identity_request.pk}/")
    # A keyboard user sits on a control inside the regions the poll updates.
    page.locator(
        "#request-live a, #request-live button, #request-live summary, #request-live [tabindex]"
    ).first.focus()
    before = _focused(page)
    assert before["tag"] != "BODY"
    announcements: list[str] = []
    page.expose_function("__announced", lambda text: announcements.append(text))
    page.evaluate(
        """() => new MutationObserver(() => window.__announced(
                 document.getElementById('live-announcer').textContent))
               .observe(document.getElementById('live-announcer'),
                        {childList: true, characterData: true, subtree: true})"""
    )

    for step, status in ((steps[0], StepStatus.RUNNING), (steps[0], StepStatus.DONE)):
        ProvisioningStep.objects.filter(pk=step.pk).update(status=status)
        page.wait_for_function(
            "([label, status]) => !!document.querySelector("
            "`tr[data-step='${label}'][data-step-status='${status}']`)",
            arg=[step.label, status],
            timeout=15_000,
        )
        page.wait_for_timeout(300)

    assert _focused(page) == before  # focus never dropped to <body>
    assert any("Managed identity: running." in text for text in announcements), announcements
    assert any("Managed identity: done." in text for text in announcements), announcements


def test_a_decommissioned_identitys_pages_read_so_and_pass_axe(
    catalog: dict[str, CatalogRole],
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
    sign_in: SignIn,
    django_capture_on_commit_callbacks: Any,
) -> None:
    original = provisioned(
        approve(
            identity_request_create(requester=requester, draft=make_draft()),
            approver,
            django_capture_on_commit_callbacks,
        )
    )
    assert original.identity is not None
    decommission = provisioned(
        approve(
            identity_request_decommission_create(
                requester=requester, identity=original.identity, justification="App retired."
            ),
            approver,
            django_capture_on_commit_callbacks,
        )
    )
    page = sign_in(requester, f"/requests/{original.pk}/")

    expect(page.get_by_test_id("request-status")).to_contain_text("Decommissioned")
    expect(page.get_by_role("button", name="Verify now")).to_have_count(0)
    expect(page.locator("[data-copy-target]")).to_have_count(0)
    expect(page.get_by_role("heading", name="Remove it from the cluster")).to_be_visible()

    page.goto(f"/requests/{decommission.pk}/")
    expect(page.get_by_test_id("request-status")).to_contain_text("Removed")

    page.goto(f"/identities/{original.identity_id}/")
    expect(page.locator("[data-copy-target]")).to_have_count(0)
    expect(page.get_by_role("heading", name="Remove it from the cluster")).to_be_visible()
    # axe-core checks each of these pages as it loads (tests/support/axe.py).
