"""The ready request's hand-over as a newcomer meets it: the next-steps box, its language tabs
working without script, and tables that fit at 1280 px and on a phone without scrolling sideways."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from identities.models import CatalogRole, IdentityRequest
from identities.services import identity_request_create
from provisioning.models import ProvisioningStep, StepStatus
from tests.browser.conftest import Screenshot, SignIn
from tests.support.people import VAULT_SCOPE, DraftFactory
from tests.ui.support import approve, provisioned

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

# Every table on the page whose content is wider than its box (it would scroll sideways).
CUT_OFF_TABLES = """Array.from(document.querySelectorAll('.table-wrap'))
  .filter(w => w.scrollWidth > w.clientWidth + 1)
  .map(w => (w.closest('section, details')?.querySelector('h2, summary')?.textContent || '?')
       .trim() + ': ' + w.scrollWidth + ' > ' + w.clientWidth)"""


@pytest.fixture
def ready(
    catalog: dict[str, CatalogRole],
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
    django_capture_on_commit_callbacks: Any,
) -> IdentityRequest:
    identity_request = provisioned(
        approve(
            identity_request_create(requester=requester, draft=make_draft()),
            approver,
            django_capture_on_commit_callbacks,
        )
    )
    # The steps a real run records, with Azure request ids and timings.
    started = timezone.now() - timedelta(seconds=20)
    labels = [
        "Create managed identity id-aks-test-payments-checkout",
        "Create federated credential fic-payments-checkout "
        "(system:serviceaccount:payments:checkout)",
        f"Assign Key Vault Secrets User on {VAULT_SCOPE}",
    ]
    for position, label in enumerate(labels):
        ProvisioningStep.objects.create(
            identity_request=identity_request,
            key=f"step-{position}",
            label=label,
            position=position,
            status=StepStatus.DONE,
            attempts=1,
            started_at=started,
            finished_at=started + timedelta(seconds=1.5 + position),
            azure_request_id=str(uuid.uuid4()),
        )
    return identity_request


def _open_every_details(page: Any) -> None:
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "phone"])
def test_no_table_of_the_ready_request_is_cut_off(
    ready: IdentityRequest,
    requester: Any,
    sign_in: SignIn,
    screenshot: Screenshot,
    viewport: dict[str, int],
) -> None:
    page = sign_in(requester)
    page.set_viewport_size(viewport)
    page.goto(f"/requests/{ready.pk}/")
    _open_every_details(page)

    assert page.locator(".table-wrap").count() >= 3  # steps, variables, troubleshooting
    assert page.evaluate(CUT_OFF_TABLES) == []
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    screenshot(page, f"30-next-steps-{viewport['width']}")


def test_the_next_steps_box_walks_a_newcomer_through_and_its_tabs_work_without_script(
    ready: IdentityRequest, requester: Any, sign_in: SignIn
) -> None:
    page = sign_in(requester, f"/requests/{ready.pk}/", javascript=False)

    box = page.locator("#next-steps")
    steps = [text.strip() for text in box.locator("ol.steps > li > strong").all_inner_texts()]
    assert steps == [
        "Apply the ServiceAccount",
        "Label the pod template",
        "Set the image",
        "Use the identity in code",
        "Verify",
    ]
    assert "kubectl apply -f payments-checkout-serviceaccount.yaml" in box.inner_text()
    assert 'azure.workload.identity/use: "true"' in box.inner_text()
    assert page.get_by_test_id("sdk-python").is_visible()
    assert not page.get_by_test_id("sdk-go").is_visible()

    page.get_by_text("Go", exact=True).click()
    assert page.get_by_test_id("sdk-go").is_visible()
    assert "azidentity.NewDefaultAzureCredential" in page.get_by_test_id("sdk-go").inner_text()
    assert not page.get_by_test_id("sdk-python").is_visible()

    # By keyboard: the tabs are a radio group, arrow keys move between them.
    page.locator("#sdk-tab-go").focus()
    page.keyboard.press("ArrowRight")
    assert page.get_by_test_id("sdk-java").is_visible()
    assert "DefaultAzureCredentialBuilder" in page.get_by_test_id("sdk-java").inner_text()

    reference = page.get_by_text("For reference: what the portal did")
    assert reference.is_visible()
    assert page.get_by_text("The same with the az CLI (reference, not to run)").is_visible()
