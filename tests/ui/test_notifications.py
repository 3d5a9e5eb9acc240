"""The inbox and the notification preferences: each person sees and changes only their own."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from identities.models import AuditEvent, Notification, NotificationPreference
from identities.services import identity_request_create
from tests.support.people import DraftFactory
from tests.ui.conftest import ClientFor

pytestmark = pytest.mark.django_db


@pytest.fixture
def filed(approver: Any, second_approver: Any, requester: Any, make_draft: DraftFactory) -> Any:
    """alice files a request after both approvers exist: each of them gets a notification."""
    return identity_request_create(requester=requester, draft=make_draft())


def test_the_inbox_lists_my_notifications_with_the_unread_count_in_the_nav(
    client_for: ClientFor, approver: Any, filed: Any
) -> None:
    response = client_for(approver).get(reverse("notification_inbox"))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="unread-count" aria-label="1 unread">1<' in html
    assert "alice filed request" in html
    assert f'href="{reverse("request_detail", args=[filed.pk])}"' in html


def test_marking_read_clears_the_count(client_for: ClientFor, approver: Any, filed: Any) -> None:
    client = client_for(approver)
    mine = Notification.objects.get(recipient=approver, channel="inbox")

    response = client.post(reverse("notification_read"), {"id": mine.pk}, follow=True)

    assert "Marked 1 notification read." in response.content.decode()
    assert 'data-testid="unread-count"' not in response.content.decode()
    mine.refresh_from_db()
    assert mine.read_at is not None


def test_another_persons_notification_cannot_be_seen_or_marked_read(
    client_for: ClientFor, approver: Any, second_approver: Any, outsider: Any, filed: Any
) -> None:
    theirs = Notification.objects.get(recipient=second_approver, channel="inbox")
    for user in (approver, outsider):
        client = client_for(user)
        html = client.get(reverse("notification_inbox")).content.decode()
        assert f'value="{theirs.pk}"' not in html
        client.post(reverse("notification_read"), {"id": theirs.pk})
        client.post(reverse("notification_read"))  # "all": all of the poster's own only
    theirs.refresh_from_db()
    assert theirs.read_at is None
    # The outsider (another team, no approver) was never told of payments' request at all.
    assert (
        "alice filed request"
        not in client_for(outsider).get(reverse("notification_inbox")).content.decode()
    )


def test_a_malformed_id_is_refused_with_the_field_named(
    client_for: ClientFor, approver: Any, filed: Any
) -> None:
    response = client_for(approver).post(
        reverse("notification_read"), {"id": "1 OR 1=1"}, follow=True
    )
    assert "id: must be the number of one of your notifications." in response.content.decode()
    assert Notification.objects.get(recipient=approver, channel="inbox").read_at is None


def test_anonymous_visitors_are_sent_to_sign_in(client: Any) -> None:
    for name, method in (
        ("notification_inbox", "get"),
        ("notification_preferences", "get"),
        ("notification_read", "post"),
    ):
        response = getattr(client, method)(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_preferences_are_saved_for_me_only_and_audited(
    client_for: ClientFor, approver: Any, second_approver: Any
) -> None:
    client = client_for(approver)
    page = client.get(reverse("notification_preferences")).content.decode()
    assert "A request waits for my approval" in page and "in a digest" in page

    response = client.post(
        reverse("notification_preferences"),
        {"email_events": ["request_filed", "drift_detected"], "email_frequency": "daily"},
        follow=True,
    )

    assert "Your notification preferences are saved." in response.content.decode()
    saved = NotificationPreference.objects.get(user=approver)
    assert (saved.email_events, saved.email_frequency) == (
        ["request_filed", "drift_detected"],
        "daily",
    )
    assert not NotificationPreference.objects.filter(user=second_approver).exists()
    event = AuditEvent.objects.get(action="notification.preferences_updated")
    assert event.actor == approver


def test_a_bad_preference_names_the_field(client_for: ClientFor, approver: Any) -> None:
    response = client_for(approver).post(
        reverse("notification_preferences"),
        {"email_events": ["request_filed", "everything"], "email_frequency": "hourly"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Select a valid choice. everything is not one of the available choices." in html
    assert "Select a valid choice. hourly is not one of the available choices." in html
    assert not NotificationPreference.objects.exists()
