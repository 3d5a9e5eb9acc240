"""Every page renders for the people who may see it, with the navigation their roles open."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import IdentityRequest
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


def page_urls(identity_request: IdentityRequest) -> list[str]:
    return [
        reverse("home"),
        reverse("request_list"),
        reverse("request_detail", args=[identity_request.pk]),
        reverse("identity_list"),
        reverse("identity_detail", args=[identity_request.identity_id]),
        reverse("audit_log"),
        reverse("api_tokens"),
    ]


@pytest.mark.parametrize("who", ["requester", "approver", "auditor", "admin_user"])
def test_every_shared_page_renders_for_every_role(
    who: str, request: pytest.FixtureRequest, client_for: ClientFor, ready_request: Any
) -> None:
    client = client_for(request.getfixturevalue(who))
    for url in page_urls(ready_request):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"<main" in response.content


def test_pages_need_a_signed_in_user(client: Any, ready_request: IdentityRequest) -> None:
    for url in [*page_urls(ready_request), reverse("request_new"), reverse("approval_queue")]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_a_requester_sees_new_request_but_not_approvals_in_the_navigation(
    client_for: ClientFor, requester: Any
) -> None:
    response = client_for(requester).get(reverse("home"))

    navigation = response.content.decode().split('aria-label="Main"')[1].split("</nav>")[0]
    assert reverse("request_new") in navigation
    assert reverse("approval_queue") not in navigation


def test_an_approver_sees_approvals_but_not_new_request_in_the_navigation(
    client_for: ClientFor, approver: Any
) -> None:
    response = client_for(approver).get(reverse("home"))

    navigation = response.content.decode().split('aria-label="Main"')[1].split("</nav>")[0]
    assert reverse("approval_queue") in navigation
    assert reverse("request_new") not in navigation


def test_the_current_section_is_marked_for_assistive_technology(
    client_for: ClientFor, requester: Any
) -> None:
    response = client_for(requester).get(reverse("identity_list"))

    assert f'href="{reverse("identity_list")}" aria-current="page"' in response.content.decode()


def test_pages_load_the_portals_own_assets_and_nothing_from_elsewhere(
    client_for: ClientFor, requester: Any
) -> None:
    html = client_for(requester).get(reverse("request_new")).content.decode()

    assert "/static/portal/portal.css" in html
    assert "/static/portal/portal.js" in html
    assert "https://" not in html.split("<body")[0]  # no CDN in the head
    assert 'class="skip-link" href="#main"' in html


def test_every_form_control_on_the_request_form_has_a_label(
    client_for: ClientFor, requester: Any, cluster: Any
) -> None:
    html = client_for(requester).get(reverse("request_new")).content.decode()

    for control_id in [
        "id_team",
        "id_cluster",
        "id_namespace",
        "id_service_account",
        "id_app_name",
        "id_roles-0-role",
        "id_roles-0-scope",
        "id_tags",
        "id_justification",
        "id_is_exception",
    ]:
        assert f'for="{control_id}"' in html, control_id


def test_home_counts_my_teams_requests_and_shows_the_chart(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest, pending_request: Any
) -> None:
    response = client_for(requester).get(reverse("home"))

    counts = response.context["counts"]
    assert counts["ready"] == 1
    assert counts["identities"] == 1
    chart = response.context["chart"]
    assert chart.total_filed == 1
    assert [p.median_seconds is not None for p in chart.points][-1] is True
    assert b'role="img"' in response.content


def test_home_tells_an_approver_what_waits_for_them(
    client_for: ClientFor, approver: Any, pending_request: IdentityRequest
) -> None:
    response = client_for(approver).get(reverse("home"))

    [item] = response.context["needs_action"]
    assert item.text == "1 request waits for your decision"
    assert item.url == reverse("approval_queue")


def test_home_tells_the_team_about_failed_requests(
    client_for: ClientFor, requester: Any, failed_request: IdentityRequest
) -> None:
    response = client_for(requester).get(reverse("home"))

    [item] = response.context["needs_action"]
    assert "1 request failed" in item.text


def test_the_request_list_filters_by_status(
    client_for: ClientFor, requester: Any, failed_request: IdentityRequest
) -> None:
    client = client_for(requester)

    failed = client.get(reverse("request_list"), {"status": "failed"})
    ready = client.get(reverse("request_list"), {"status": "ready"})

    assert list(failed.context["page_obj"].object_list) == [failed_request]
    assert list(ready.context["page_obj"].object_list) == []


def test_the_request_list_searches_by_app_name_and_ignores_unknown_filter_values(
    client_for: ClientFor, requester: Any, failed_request: IdentityRequest
) -> None:
    client = client_for(requester)

    def listed(**query: str) -> list[IdentityRequest]:
        return list(client.get(reverse("request_list"), query).context["page_obj"].object_list)

    assert listed(q=failed_request.app_name[:4]) == [failed_request]
    assert listed(q="no-such-app") == []
    assert listed(status="bogus") == [failed_request]
    assert listed(status="failed", kind="new") == [failed_request]
