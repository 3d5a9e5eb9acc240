"""Changing a live identity's roles from its page: the form prefilled from its roles, the diff on
the request page and the approval queue, the identity's history, and the refusals."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import AuditEvent, IdentityRequest, RequestKind
from identities.services import identity_request_approve
from tests.api.conftest import make_failed
from tests.support.people import SUBSCRIPTION, VAULT_SCOPE
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db

NEW_VAULT = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
    "/providers/Microsoft.KeyVault/vaults/kv-payments-2"
)


def change_form(*rows: tuple[str, str], justification: str = "Secrets moved.") -> dict[str, str]:
    data = {
        "roles-TOTAL_FORMS": str(len(rows)),
        "roles-INITIAL_FORMS": "0",
        "justification": justification,
    }
    for index, (role, scope) in enumerate(rows):
        data[f"roles-{index}-role"] = role
        data[f"roles-{index}-scope"] = scope
    return data


def test_the_form_is_prefilled_with_the_identitys_roles(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    identity_id = ready_request.identity_id
    detail = client_for(requester).get(reverse("identity_detail", args=[identity_id]))
    assert reverse("identity_change", args=[identity_id]) in detail.content.decode()

    response = client_for(requester).get(reverse("identity_change", args=[identity_id]))

    assert response.status_code == 200
    first = response.context["role_forms"].forms[0]
    assert (first["role"].value(), first["scope"].value()) == (
        "Key Vault Secrets User",
        VAULT_SCOPE,
    )
    # One prefilled row and two blank ones to add roles.
    assert len(response.context["role_forms"].forms) == 3


def test_changing_a_scope_files_a_change_with_its_diff_for_requester_approver_and_history(
    client_for: ClientFor, requester: Any, approver: Any, ready_request: IdentityRequest
) -> None:
    identity_id = ready_request.identity_id
    response = client_for(requester).post(
        reverse("identity_change", args=[identity_id]),
        change_form(("Key Vault Secrets User", NEW_VAULT)),
    )

    change = IdentityRequest.objects.get(kind=RequestKind.CHANGE_ROLES)
    assert response.status_code == 302
    assert response["Location"] == reverse("request_detail", args=[change.pk])
    assert AuditEvent.objects.filter(
        identity_request=change, action="identity_request.created", actor=requester
    ).exists()

    page = client_for(requester).get(reverse("request_detail", args=[change.pk]))
    lines = [(line.sign, line.detail) for line in page.context["change_diff"]]
    assert lines == [
        ("+", f"Key Vault Secrets User on {NEW_VAULT}"),
        ("-", f"Key Vault Secrets User on {VAULT_SCOPE}"),
    ]
    assert 'aria-label="Roles added, removed and unchanged"' in page.content.decode()

    queue = client_for(approver).get(reverse("approval_queue"))
    [(item, diff)] = queue.context["items"]
    assert item.identity_request == change
    assert [(line.sign, line.detail) for line in diff] == lines

    identity_request_approve(identity_request=change, approver=approver)
    detail = client_for(requester).get(reverse("identity_detail", args=[identity_id]))
    history = detail.context["history"]
    assert [entry.pk for entry, _ in history] == [change.pk, ready_request.pk]
    assert [(line.sign, line.detail) for line in history[0][1]] == lines
    html = detail.content.decode()
    assert "asked by <strong>alice</strong>" in html
    assert "approved by <strong>sam</strong>" in html
    # The open change is named; no second change is offered meanwhile.
    assert reverse("identity_change", args=[identity_id]) not in html
    assert f'Change <a href="{reverse("request_detail", args=[change.pk])}">' in html


def test_a_refused_change_shows_each_finding_and_files_nothing(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    protected = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-identities"
        "/providers/Microsoft.KeyVault/vaults/kv-portal"
    )
    response = client_for(requester).post(
        reverse("identity_change", args=[ready_request.identity_id]),
        change_form(("Key Vault Secrets User", VAULT_SCOPE), ("Key Vault Secrets User", protected)),
    )

    assert response.status_code == 200
    assert [(v.field, v.rule) for v in response.context["violations"]] == [
        ("roles[0].scope", "protected_scope")
    ]
    assert "protected_scope" in response.content.decode()
    assert not IdentityRequest.objects.filter(kind=RequestKind.CHANGE_ROLES).exists()


def test_an_unchanged_form_is_refused_as_no_change(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(requester).post(
        reverse("identity_change", args=[ready_request.identity_id]),
        change_form(("Key Vault Secrets User", VAULT_SCOPE.lower())),
    )
    assert [(v.field, v.rule) for v in response.context["violations"]] == [("roles", "no_change")]


def test_another_team_gets_404(
    client_for: ClientFor, outsider: Any, ready_request: IdentityRequest
) -> None:
    url = reverse("identity_change", args=[ready_request.identity_id])
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(outsider).post(url, change_form()).status_code == 404


def test_a_failed_change_offers_its_team_and_approvers_a_cancel_saying_what_it_keeps(
    client_for: ClientFor,
    requester: Any,
    approver: Any,
    auditor: Any,
    ready_request: IdentityRequest,
) -> None:
    client_for(requester).post(
        reverse("identity_change", args=[ready_request.identity_id]),
        change_form(("Key Vault Secrets User", NEW_VAULT)),
    )
    change = IdentityRequest.objects.get(kind=RequestKind.CHANGE_ROLES)
    make_failed(identity_request_approve(identity_request=change, approver=approver))
    url = reverse("request_detail", args=[change.pk])

    for user in (requester, approver):
        page = client_for(user).get(url).content.decode()
        assert 'data-testid="cancel-failed-change"' in page
        assert reverse("request_cancel", args=[change.pk]) in page
        assert "Roles Azure confirmed stay as they are" in page
    assert reverse("request_cancel", args=[change.pk]) not in (
        client_for(auditor).get(url).content.decode()
    )

    response = client_for(approver).post(reverse("request_cancel", args=[change.pk]))
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.status == "cancelled"
    event = AuditEvent.objects.filter(identity_request=change).latest("id")
    assert (event.action, event.actor) == ("identity_request.cancelled", approver)
