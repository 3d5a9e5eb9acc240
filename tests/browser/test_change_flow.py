"""A change of roles in a real browser: the requester edits a live identity's roles from its page,
the approver sends the change back, the requester edits and resubmits it, the approver approves,
a real Celery worker writes only the delta against the emulator, and the identity's page lists
the change in its history."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from identities.models import AuditEvent, Identity, IdentityRequest, RequestKind, RequestStatus
from identities.policy import RoleDraft
from identities.services import identity_request_approve, identity_request_change_create
from provisioning.reconcile import reconcile_request
from tests.browser.conftest import Screenshot, SignIn
from tests.support.people import SUBSCRIPTION, VAULT_SCOPE
from tests.support.sandbox import ApprovedRequestFactory, Sandbox, top_level_resource
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PROVISIONING_TIMEOUT_MS = 90_000
NEW_VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments-2"
)


def test_a_role_change_is_filed_sent_back_resubmitted_approved_and_written_as_a_delta(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    sign_in: SignIn,
    screenshot: Screenshot,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    origin = approved_request()
    reconcile_request(origin.pk)
    identity = Identity.objects.get(pk=origin.identity_id)
    client_id = identity.client_id
    sandbox.emulator.register_resources(top_level_resource(NEW_VAULT))
    broker = make_broker("embedded", tmp_path)
    use_broker(broker)
    worker = start_worker(broker, **sandbox.worker_env)

    # --- the requester changes the vault of the identity's one role ---------------------------
    page = sign_in(requester, next=f"/identities/{identity.pk}/")
    page.get_by_role("link", name="Change roles").click()
    expect(page.get_by_role("heading", name="Change roles")).to_be_visible()
    expect(page.get_by_label("Scope of role 1")).to_have_value(VAULT_SCOPE)
    page.get_by_label("Scope of role 1").fill(NEW_VAULT)
    page.get_by_label("Justification").fill("Checkout's secrets moved to kv-payments-2.")
    screenshot(page, "change-01-form")
    page.get_by_role("button", name="File change request").click()
    change = IdentityRequest.objects.get(kind=RequestKind.CHANGE_ROLES)
    expect(page.locator(".messages")).to_contain_text(f"Change request #{change.pk} filed")
    diff = page.get_by_role("list", name="Roles added, removed and unchanged")
    expect(diff.locator("li.add")).to_contain_text(NEW_VAULT)
    expect(diff.locator("li.remove")).to_contain_text(VAULT_SCOPE)
    screenshot(page, "change-02-request")

    # --- the approver reads the diff and sends it back -----------------------------------------
    approver_page = sign_in(approver, next="/approvals/")
    item = approver_page.locator(f"#request-{change.pk}")
    expect(item.locator("li.add")).to_contain_text(NEW_VAULT)
    expect(item.locator("li.remove")).to_contain_text(VAULT_SCOPE)
    item.get_by_label("Comment").fill("Say which app reads the vault.")
    item.get_by_role("button", name="Send back for changes").click()
    expect(approver_page.locator(".messages")).to_contain_text(f"Request #{change.pk} sent back")

    # --- the requester edits and resubmits -----------------------------------------------------
    page.goto(f"/requests/{change.pk}/")
    edit = page.locator("#request-edit")
    expect(edit).to_contain_text("Say which app reads the vault.")
    expect(edit.get_by_label("Scope of role 1")).to_have_value(NEW_VAULT)
    edit.get_by_label("Justification").fill(
        "The checkout app reads its payment provider secrets from kv-payments-2."
    )
    screenshot(page, "change-03-sent-back")
    edit.get_by_role("button", name="Save and resubmit").click()
    expect(page.locator(".messages")).to_contain_text("resubmitted as revision 2")
    expect(page.locator("#request-revisions")).to_contain_text("sent back by sam")

    # --- the approver approves; the worker writes the delta ------------------------------------
    log_start = len(sandbox.emulator.requests())
    approver_page.goto("/approvals/")
    item = approver_page.locator(f"#request-{change.pk}")
    item.get_by_role("button", name="Approve").click()
    expect(approver_page.locator(".messages")).to_contain_text(
        f"Approval of request #{change.pk} recorded"
    )
    page.goto(f"/requests/{change.pk}/")
    expect(page.get_by_test_id("request-status")).to_contain_text(
        "Ready", timeout=PROVISIONING_TIMEOUT_MS
    )
    change.refresh_from_db()
    assert change.status == RequestStatus.READY, f"{change.last_error}\n{worker.log_tail()}"
    writes = sandbox.arm_writes(log_start)
    assert sorted(w["method"] for w in writes) == ["DELETE", "PUT"], [w["path"] for w in writes]
    identity.refresh_from_db()
    assert identity.client_id == client_id
    scopes = [a["scope"].lower() for a in sandbox.arm()["role_assignments"].values()]
    assert scopes == [NEW_VAULT.lower()]

    # --- the identity's history lists the change: who asked, who approved, what changed --------
    page.goto(f"/identities/{identity.pk}/")
    history = page.locator("#identity-history li", has_text=f"#{change.pk}").first
    expect(history).to_contain_text("asked by alice")
    expect(history).to_contain_text("approved by sam")
    expect(history.locator("li.add")).to_contain_text(NEW_VAULT)
    screenshot(page, "change-04-history")
    actions = set(
        AuditEvent.objects.filter(identity_request=change).values_list("action", flat=True)
    )
    assert {
        "identity_request.created",
        "identity_request.sent_back",
        "identity_request.revised",
        "identity_request.resubmitted",
        "identity.roles_changing",
        "identity_request.approved",
        "azure.role_assignment.deleted",
        "azure.role_assignment.created",
        "identity_request.ready",
        "identity.roles_changed",
    } <= actions


def test_a_failed_change_is_cancelled_from_its_page_after_a_confirmation(
    sandbox: Sandbox,
    approved_request: ApprovedRequestFactory,
    requester: Any,
    approver: Any,
    sign_in: SignIn,
    screenshot: Screenshot,
) -> None:
    origin = approved_request()
    reconcile_request(origin.pk)
    identity = Identity.objects.get(pk=origin.identity_id)
    # NEW_VAULT is not registered in the emulator: ARM answers the PUT 404 and the change fails.
    change = identity_request_change_create(
        requester=requester,
        identity=identity,
        add=(RoleDraft("Key Vault Secrets User", NEW_VAULT),),
        remove=(),
        justification="Checkout's secrets moved to kv-payments-2.",
    )
    identity_request_approve(identity_request=change, approver=approver)
    reconcile_request(change.pk)
    change.refresh_from_db()
    assert change.status == RequestStatus.FAILED

    page = sign_in(requester, next=f"/requests/{change.pk}/")
    expect(page.get_by_test_id("request-status")).to_contain_text("Failed")
    expect(page.get_by_test_id("cancel-failed-change")).to_contain_text(
        "keeps what Azure confirmed"
    )
    screenshot(page, "change-05-failed")
    confirmations: list[str] = []
    page.on("dialog", lambda dialog: confirmations.append(dialog.message))
    page.get_by_role("button", name="Cancel request").click()
    expect(page.locator(".messages")).to_contain_text(f"Request #{change.pk} cancelled")
    expect(page.get_by_test_id("request-status")).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel request")).to_have_count(0)
    assert confirmations == [
        f"Cancel change #{change.pk}? Roles Azure confirmed stay as they are; the rest of the "
        "change is dropped."
    ]
    change.refresh_from_db()
    assert change.status == RequestStatus.CANCELLED
    event = AuditEvent.objects.filter(identity_request=change).latest("id")
    assert (event.action, event.actor) == ("identity_request.cancelled", requester)
    assert event.data["not_added"] == [{"role": "Key Vault Secrets User", "scope": NEW_VAULT}]
    assert not identity.role_assignments.filter(scope=NEW_VAULT, status="pending").exists()
