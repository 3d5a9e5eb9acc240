"""The whole path in a real browser: a requester files (after a refused namespace), an approver
approves, a real Celery worker provisions against the emulator while the requester watches the
progress live, the federation is verified, and the YAML is downloaded."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from identities.models import CatalogRole, DriftState, Identity, IdentityRequest
from identities.policy import RoleDraft
from identities.services import identity_request_create
from provisioning.drift import identity_check_drift
from tests.browser.conftest import Screenshot, SignIn, publish_docs_screenshot
from tests.support.emulator import build_azure_clients
from tests.support.people import RESOURCE_GROUP_SCOPE, SUBSCRIPTION, VAULT_SCOPE, DraftFactory
from tests.support.sandbox import Sandbox
from tests.support.services import wait_until
from tests.support.workers import Broker, WorkerFactory, make_broker

# serialized_rollback: the flush after each test then skips post_migrate, so the tests that
# restore the migrated rows (content types, groups, the catalog) after these still can.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PROVISIONING_TIMEOUT_MS = 90_000


def test_requester_files_approver_approves_and_requester_verifies_and_downloads_the_yaml(
    sandbox: Sandbox,
    catalog: dict[str, CatalogRole],
    requester: Any,
    approver: Any,
    auditor: Any,
    make_draft: DraftFactory,
    sign_in: SignIn,
    screenshot: Screenshot,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    broker = make_broker("embedded", tmp_path)
    use_broker(broker)
    # Attempts enough to outlast the replication delay set below.
    worker = start_worker(broker, **sandbox.worker_env, PROVISIONING_STEP_ATTEMPTS="40")

    # --- the requester fills the form: a namespace of another team is refused, then fixed ----
    page = sign_in(requester, next="/requests/new/")
    expect(page.get_by_role("heading", name="New identity request")).to_be_visible()
    page.get_by_label("Cluster", exact=True).select_option(sandbox.cluster.name)
    expect(page.locator("#namespace-choices")).to_contain_text("payments")
    page.get_by_label("Namespace", exact=True).fill("search")
    page.get_by_label("ServiceAccount", exact=True).fill("checkout")
    page.get_by_label("App name").fill("checkout")
    page.get_by_label("Role 1", exact=True).select_option("Key Vault Secrets User")
    expect(page.locator(".role-description").first).to_contain_text("secret")
    page.get_by_label("Scope of role 1").fill(VAULT_SCOPE)
    page.get_by_role("button", name="Add a role").click()  # a second row, left blank
    expect(page.get_by_label("Role 2", exact=True)).to_be_focused()
    page.get_by_label("Tags").fill("costCentre=cc-4711\nenvironment=dev")
    page.get_by_label("Justification").fill(
        "Checkout reads its payment provider secrets from Key Vault."
    )
    # Live policy feedback names the field and the rule, before anything is submitted.
    namespace_feedback = page.locator("#id_namespace-feedback")
    expect(namespace_feedback).to_contain_text("namespace_not_owned")
    expect(page.locator("#policy-feedback")).to_contain_text("Namespace")
    expect(page.get_by_label("Namespace", exact=True)).to_have_attribute("aria-invalid", "true")
    screenshot(page, "01-new-request-refused-namespace")

    # Filing anyway: the server refuses with the same finding on the same field.
    page.get_by_role("button", name="File request").click()
    expect(page.locator("#id_namespace-feedback")).to_contain_text("namespace_not_owned")
    assert IdentityRequest.objects.count() == 0

    # Fixed: the error clears as you type and the preview shows what will be created.
    page.get_by_label("Namespace", exact=True).fill("payments")
    expect(page.locator("#id_namespace-feedback")).to_be_empty()
    expect(page.locator("#policy-feedback")).to_contain_text("No policy violations")
    preview = page.locator("#request-preview")
    expect(preview.locator("[data-preview=identity-name]")).to_have_text(
        f"{sandbox.cluster.name}-payments-checkout"
    )
    expect(preview.locator("[data-preview=subject]")).to_have_text(
        "system:serviceaccount:payments:checkout"
    )
    expect(preview.locator("[data-preview=issuer]")).to_have_text(sandbox.aks["issuer_url"])
    expect(preview).to_contain_text("Key Vault Secrets User")
    expect(preview).to_contain_text("costCentre")
    screenshot(page, "02-new-request-preview")
    page.get_by_role("button", name="File request").click()
    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    identity_request = IdentityRequest.objects.get()
    assert identity_request.roles.count() == 1  # the blank row is not a role
    status = page.get_by_test_id("request-status")
    expect(status).to_contain_text("Pending")
    screenshot(page, "03-request-pending")
    # A second, risky request waits beside it (it is never approved here).
    exception = identity_request_create(
        requester=requester,
        draft=make_draft(
            service_account="reports",
            app_name="reports",
            roles=(RoleDraft("Contributor", RESOURCE_GROUP_SCOPE),),
            is_exception=True,
            justification="Nightly reports create containers in every storage account of rg.",
        ),
    )

    # --- the approver approves from the queue ------------------------------------------------
    approver_page = sign_in(approver, next="/approvals/")
    item = approver_page.locator(f"#request-{identity_request.pk}")
    expect(item).to_contain_text("low risk")
    expect(item.locator(".diff")).to_contain_text("Key Vault Secrets User")
    expect(item.get_by_test_id("four-eyes")).to_contain_text("0 of 1 approval")
    risky = approver_page.locator(f"#request-{exception.pk}")
    expect(risky).to_contain_text("high risk")
    expect(risky.get_by_test_id("four-eyes")).to_contain_text("0 of 2 approvals")
    screenshot(approver_page, "04-approval-queue")
    # Entra's replication delay: role assignments meet PrincipalNotFound for a while and the
    # engine retries them, so the page can be watched mid-run.
    sandbox.emulator.config(
        principal_replication_delay_seconds=6, principal_not_found_even_with_type=True
    )
    item.get_by_label("Comment").fill("Scoped to one vault; fine.")
    item.get_by_role("button", name="Approve").click()
    expect(approver_page.locator(".messages")).to_contain_text(
        f"Approval of request #{identity_request.pk} recorded"
    )

    # --- the requester watches provisioning reach ready, without reloading --------------------
    page.evaluate("window.__notReloaded = true")
    running = page.locator("#request-progress tr[data-step-status=running]", has_text="Role")
    expect(running).to_be_visible(timeout=PROVISIONING_TIMEOUT_MS)
    expect(running).to_contain_text("retrying", timeout=PROVISIONING_TIMEOUT_MS)
    expect(status).to_contain_text("Provisioning")
    screenshot(page, "05-request-provisioning-live")
    expect(status).to_contain_text("Ready", timeout=PROVISIONING_TIMEOUT_MS)
    identity_request.refresh_from_db()
    assert identity_request.status == "ready", (
        f"{identity_request.last_error}\nworker log:\n{worker.log_tail()}"
    )
    assert page.evaluate("window.__notReloaded") is True, "the page reloaded"
    steps = page.locator("#request-progress tbody tr")
    expect(steps.first).to_be_visible()
    assert steps.count() >= 3
    expect(page.locator("#request-progress [data-step-status=done]")).to_have_count(steps.count())
    expect(page.locator("#out-client-id")).to_have_text(
        re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    )
    # The automatic check after provisioning arrives live too.
    result = page.get_by_test_id("verification-result")
    expect(result).to_contain_text("Federation works", timeout=PROVISIONING_TIMEOUT_MS)

    # --- verifies again on demand, and downloads the YAML -------------------------------------
    page.get_by_role("button", name="Verify now").click()
    expect(page.locator(".messages")).to_contain_text("Verification started")
    expect(page.locator("#verification details")).to_contain_text(
        "Earlier checks", timeout=PROVISIONING_TIMEOUT_MS
    )
    expect(result).to_contain_text("Federation works")
    screenshot(page, "06-request-ready-verified")
    page.reload()  # without the flash message, for the README
    expect(result).to_contain_text("Federation works")
    publish_docs_screenshot(page)

    client_id = page.locator("#out-client-id").inner_text()
    page.get_by_role("button", name="Copy client id").click()
    assert page.evaluate("navigator.clipboard.readText()") == client_id

    with page.expect_download() as download_info:
        page.get_by_test_id("download-bundle").click()
    download = download_info.value
    assert download.suggested_filename == "payments-checkout.yaml"
    yaml_text = Path(download.path()).read_text()
    assert f"azure.workload.identity/client-id: {client_id}" in yaml_text
    assert "azure.workload.identity/use: 'true'" in yaml_text
    assert "kind: ServiceAccount" in yaml_text
    assert "kind: Deployment" in yaml_text

    # --- drift made behind the portal's back shows in the inventory, and is repaired ----------
    identity = Identity.objects.get(requests=identity_request)
    [assignment] = identity.role_assignments.all()
    clients = build_azure_clients(sandbox.emulator, SUBSCRIPTION)
    clients.authorization.role_assignments.delete(assignment.scope, assignment.name)
    assert identity_check_drift(identity=identity)
    page.goto("/identities/")
    row = page.locator("tbody tr", has_text=identity.name)
    expect(row.get_by_test_id("fic-usage")).to_have_text("1/20")
    expect(row).to_contain_text("Drifted")
    expect(row).to_contain_text("role_assignment_missing")
    row.locator("details summary").click()
    screenshot(page, "07-identities-drifted")
    row.get_by_role("button", name="Repair").click()
    expect(page.locator(".messages")).to_contain_text(f"Repair of {identity.name} queued")
    assert wait_until(
        lambda: Identity.objects.get(pk=identity.pk).drift_state == DriftState.IN_SYNC,
        timeout=60,
        interval=0.25,
    ), worker.log_tail()
    page.reload()
    expect(page.locator("tbody tr", has_text=identity.name)).to_contain_text("In Sync")
    page.get_by_role("link", name=identity.name).click()
    expect(page.locator("#roles-title + .table-wrap")).to_contain_text("Key Vault Secrets User")
    screenshot(page, "08-identity-detail")

    # --- the rest of the portal, for the record ------------------------------------------------
    page.goto("/")
    expect(page.locator(".chart svg rect.bar")).to_have_count(8)
    screenshot(page, "09-home-requester")
    approver_page.goto("/")
    expect(approver_page.locator(".notice")).to_contain_text("1 request waits for your decision")
    screenshot(approver_page, "10-home-approver")
    auditor_page = sign_in(auditor, next="/audit/")
    expect(auditor_page.get_by_test_id("chain-status")).to_contain_text("Chain verified")
    # A full check by the worker, followed live on the page until its verdict shows.
    auditor_page.get_by_role("button", name="Verify the whole chain now").click()
    expect(auditor_page.locator(".messages")).to_contain_text("Verifying the whole chain")
    expect(auditor_page.get_by_test_id("chain-status")).to_contain_text(
        re.compile(r"Check #\d+ walked the whole chain"), timeout=60_000
    )
    screenshot(auditor_page, "11-audit-log")
    page.goto("/tokens/")
    page.get_by_label("Name").fill("ci-pipeline")
    page.get_by_label("read: see requests").check()
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("new-token")).to_have_text(re.compile(r"^wip_"))
    screenshot(page, "12-api-tokens")


def test_a_requester_has_no_approvals_link_and_no_one_elses_work_to_approve(
    requester: Any, sign_in: SignIn, screenshot: Screenshot
) -> None:
    page = sign_in(requester, next="/")
    page.context.clear_cookies()
    page.goto("/accounts/login/")
    screenshot(page, "00-sign-in")
    page.get_by_label("Username").fill(requester.get_username())
    page.get_by_label("Password").fill("test-password")
    page.get_by_role("button", name="Sign in").click()
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Requests")).to_be_visible()
    expect(navigation.get_by_role("link", name="Approvals")).to_have_count(0)

    # A team member's queue holds only other teams' requests their team must approve as owner
    # (none here): never their own team's, which only security approves.
    response = page.goto("/approvals/")

    assert response is not None
    assert response.status == 200
    expect(page.get_by_text("Nothing waits for approval.")).to_be_visible()
    screenshot(page, "13-approvals-empty-for-requester")


def test_the_request_form_works_without_javascript(
    cluster: Any,
    catalog: dict[str, CatalogRole],
    requester: Any,
    sign_in: SignIn,
    screenshot: Screenshot,
) -> None:
    page = sign_in(requester, next="/requests/new/", javascript=False)
    page.get_by_label("Cluster", exact=True).select_option(cluster.name)
    page.get_by_label("Namespace", exact=True).fill("search")
    page.get_by_label("ServiceAccount", exact=True).fill("checkout")
    page.get_by_label("App name").fill("checkout")
    page.get_by_label("Role 1", exact=True).select_option("Key Vault Secrets User")
    page.get_by_label("Scope of role 1").fill(VAULT_SCOPE)
    page.get_by_label("Justification").fill("Checkout reads its secrets from Key Vault.")

    page.get_by_role("button", name="Add a role").click()
    expect(page.get_by_label("Role 2", exact=True)).to_be_visible()
    page.get_by_role("button", name="Check and preview").click()
    expect(page.locator("#id_namespace-feedback")).to_contain_text("namespace_not_owned")
    expect(page.locator("#policy-feedback")).to_contain_text("1 problem blocks this request")
    screenshot(page, "14-new-request-without-javascript")

    page.get_by_label("Namespace", exact=True).fill("payments")
    page.get_by_role("button", name="File request").click()
    page.wait_for_url(re.compile(r"/requests/\d+/$"))
    expect(page.get_by_test_id("request-status")).to_contain_text("Pending")
    assert IdentityRequest.objects.get().namespace == "payments"
