"""Time-bound access in the web UI: the end-date fields with the policy's maximum beside them,
a refusal placed on the role's end-date control, the end dates on the identity page, and the
"Renew" button's change form prefilled with new end dates (filed as a renewal)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from identities.models import (
    AuditEvent,
    Cluster,
    IdentityRequest,
    RequestKind,
    RoleAssignment,
    RoleChange,
)
from tests.support.people import VAULT_SCOPE
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db

EXCEPTION_WHY = "Checkout needs to manage its vault for the migration week, then loses it."


@pytest.fixture(autouse=True)
def bounded(settings: Any) -> None:
    settings.ACCESS_MAX_DAYS_PRIVILEGED = 30
    settings.ACCESS_MAX_DAYS = 0


@pytest.fixture
def form_data(cluster: Cluster, catalog: Any) -> dict[str, str]:
    return {
        "team": "payments",
        "cluster": cluster.name,
        "namespace": "payments",
        "service_account": "checkout",
        "app_name": "checkout",
        "roles-TOTAL_FORMS": "1",
        "roles-INITIAL_FORMS": "0",
        "roles-MIN_NUM_FORMS": "1",
        "roles-MAX_NUM_FORMS": "20",
        "roles-0-role": "Contributor",
        "roles-0-scope": VAULT_SCOPE,
        "tags": "costCentre=cc-4711\nenvironment=dev",
        "justification": EXCEPTION_WHY,
        "is_exception": "on",
    }


def test_the_form_shows_the_end_date_fields_and_their_maximum(
    client_for: ClientFor, requester: Any, cluster: Cluster, catalog: Any
) -> None:
    html = client_for(requester).get(reverse("request_new")).content.decode()
    assert 'name="roles-0-expires_at"' in html
    assert 'type="datetime-local"' in html
    assert "Privileged roles need one, at most 30 days away." in html
    assert 'name="identity_expires_at"' in html
    assert 'aria-describedby="id_roles-0-expires_at_helptext id_roles-0-expires_at-feedback"' in (
        html
    )


def test_a_privileged_role_without_an_end_date_is_refused_on_its_end_date_field(
    client_for: ClientFor, requester: Any, form_data: dict[str, str]
) -> None:
    response = client_for(requester).post(reverse("request_new"), form_data)
    assert response.status_code == 400
    assert not IdentityRequest.objects.exists()
    placed = [
        v for v in response.context["feedback"].violations if v.finding.rule == "expiry_required"
    ]
    assert [(v.dom_id, v.label) for v in placed] == [("id_roles-0-expires_at", "Role 1 end date")]
    html = response.content.decode()
    box = html.split('id="id_roles-0-expires_at-feedback"')[1].split("</ul>")[0]
    assert "expiry_required" in box


def test_a_request_with_an_end_date_is_filed_and_the_identity_page_shows_it(
    client_for: ClientFor,
    requester: Any,
    form_data: dict[str, str],
    ready_request: IdentityRequest,
) -> None:
    end = (timezone.now() + timedelta(days=10)).replace(second=0, microsecond=0)
    data = {
        **form_data,
        "service_account": "worker",
        "app_name": "worker",
        "roles-0-expires_at": end.strftime("%Y-%m-%dT%H:%M"),
    }
    response = client_for(requester).post(reverse("request_new"), data)
    assert response.status_code == 302, response.context and response.context["feedback"]
    filed = IdentityRequest.objects.exclude(pk=ready_request.pk).get()
    assert filed.roles.get().expires_at == end

    RoleAssignment.objects.filter(identity_id=ready_request.identity_id).update(expires_at=end)
    page = client_for(requester).get(reverse("identity_detail", args=[ready_request.identity_id]))
    html = page.content.decode()
    assert end.strftime("%Y-%m-%d %H:%M") + " UTC" in html
    renew_link = reverse("identity_change", args=[ready_request.identity_id]) + "?renew=1"
    assert renew_link in html


def test_renew_prefills_new_end_dates_and_files_a_renewal(
    client_for: ClientFor, requester: Any, outsider: Any, ready_request: IdentityRequest
) -> None:
    identity_id = ready_request.identity_id
    old_end = timezone.now() + timedelta(days=3)
    RoleAssignment.objects.filter(identity_id=identity_id).update(expires_at=old_end)
    url = reverse("identity_change", args=[identity_id])
    form = client_for(requester).get(url + "?renew=1")
    assert form.status_code == 200
    first = form.context["role_forms"].forms[0]
    proposed = first["expires_at"].value()  # shown in the current time zone (UTC)
    assert timezone.make_aware(proposed) > old_end
    # Filing what was prefilled: one renewal, nothing added or removed.
    data = {
        "roles-TOTAL_FORMS": "1",
        "roles-INITIAL_FORMS": "0",
        "roles-0-role": first["role"].value(),
        "roles-0-scope": first["scope"].value(),
        "roles-0-expires_at": proposed.strftime("%Y-%m-%dT%H:%M"),
        "justification": form.context["form"]["justification"].value(),
    }
    response = client_for(requester).post(url, data)
    assert response.status_code == 302
    change = IdentityRequest.objects.get(kind=RequestKind.CHANGE_ROLES)
    [row] = change.roles.all()
    assert row.change == RoleChange.RENEW
    assert row.expires_at is not None and row.expires_at > old_end
    assert AuditEvent.objects.filter(
        identity_request=change, action="identity_request.created", actor=requester
    ).exists()
    page = client_for(requester).get(reverse("request_detail", args=[change.pk]))
    [line] = page.context["change_diff"]
    assert line.what == "Role assignment (kept, new end date)"
    # Another team's member cannot open the renewal form.
    assert client_for(outsider).get(url + "?renew=1").status_code in (403, 404)
