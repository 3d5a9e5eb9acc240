"""The outbox: rows written in the transaction of the event, for the right people, once; then
delivered to a real SMTP server (aiosmtpd) by the delivery services, through outages."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from identities.errors import DomainError, PolicyViolationError
from identities.models import (
    AuditEvent,
    DeliveryStatus,
    Notification,
    NotificationChannel,
    NotificationEvent,
    NotificationPreference,
)
from identities.selectors.notifications import notification_audience
from identities.services import (
    identity_request_approve,
    identity_request_create,
    identity_request_mark_failed,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
    identity_request_reject,
    notification_preference_save,
    notifications_record,
    webhook_endpoint_create,
    webhook_endpoint_delete,
)
from identities.work import Work
from notifications import services, tasks
from provisioning.drift import _record_drift
from tests.identities.conftest import FileRequest
from tests.support.people import DraftFactory, IdentityFactory, UserFactory
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.django_db


def rows(**filters: Any) -> list[tuple[str, str, str]]:
    """(event, recipient, channel) of the outbox rows, sorted."""
    return sorted(
        Notification.objects.filter(**filters).values_list(
            "event", "recipient__username", "channel"
        )
    )


def email_keys(**filters: Any) -> list[str]:
    return list(
        Notification.objects.filter(channel=NotificationChannel.EMAIL, **filters)
        .order_by("id")
        .values_list("key", flat=True)
    )


# --- who is told, in the transaction of the event --------------------------------------------


def test_filing_tells_every_approver_but_not_the_requester(
    file_request: FileRequest,
    approver: Any,
    second_approver: Any,
    requester: Any,
    work_sent: list[tuple[Work, tuple[object, ...]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        identity_request = file_request()

    assert rows() == [
        ("request_filed", "sam", "email"),
        ("request_filed", "sam", "inbox"),
        ("request_filed", "sara", "email"),
        ("request_filed", "sara", "inbox"),
    ]
    filed = AuditEvent.objects.get(
        identity_request=identity_request, action="identity_request.created"
    )
    assert all(key.startswith(f"audit:{filed.pk}:") for key in email_keys())
    # The inbox copy is there at once; the email waits for the worker, asked for on commit.
    assert set(Notification.objects.filter(channel="inbox").values_list("status", flat=True)) == {
        "delivered"
    }
    assert work_sent == [(Work.DELIVER_NOTIFICATIONS, (email_keys(),))]


def test_a_cross_team_request_also_tells_the_owning_team(
    outsider: Any, requester: Any, teammate: Any, approver: Any, make_draft: DraftFactory
) -> None:
    # bob (search) asks for a role on payments' vault: payments' members may approve it too.
    identity_request_create(
        requester=outsider,
        draft=make_draft(
            team="search", namespace="search", app_name="indexer", service_account="indexer"
        ),
    )
    told = {user for _, user, _ in rows(event=NotificationEvent.REQUEST_FILED)}
    assert told == {"sam", "alice", "carol"}


def test_a_refused_filing_writes_no_notification(file_request: FileRequest, approver: Any) -> None:
    with pytest.raises(PolicyViolationError):
        file_request(namespace="kube-system")
    assert Notification.objects.count() == 0


def test_with_notifications_disabled_nothing_is_recorded_and_the_decision_stands(
    file_request: FileRequest, approver: Any, teammate: Any, settings: Any
) -> None:
    settings.NOTIFICATIONS_ENABLED = False
    identity_request = file_request()
    identity_request_approve(identity_request=identity_request, approver=approver)

    identity_request.refresh_from_db()
    assert identity_request.status == "approved"
    assert AuditEvent.objects.filter(action="identity_request.approved").count() == 1
    assert Notification.objects.count() == 0


def test_the_decision_tells_the_requester_and_their_team(
    file_request: FileRequest, approver: Any, teammate: Any, outsider: Any
) -> None:
    identity_request = file_request()
    identity_request_approve(identity_request=identity_request, approver=approver, comment="ok")

    assert rows(event=NotificationEvent.REQUEST_APPROVED) == [
        ("request_approved", "alice", "email"),
        ("request_approved", "alice", "inbox"),
        ("request_approved", "carol", "email"),
        ("request_approved", "carol", "inbox"),
    ]
    assert Notification.objects.filter(event="request_approved").first().data == {  # type: ignore[union-attr]
        "actor": "sam",
        "comment": "ok",
    }


def test_rejection_ready_and_failure_tell_the_team(
    file_request: FileRequest, approver: Any, teammate: Any
) -> None:
    rejected = file_request()
    identity_request_reject(identity_request=rejected, approver=approver, comment="Too broad.")
    assert {user for _, user, _ in rows(event="request_rejected")} == {"alice", "carol"}

    failing = file_request(service_account="worker", app_name="worker")
    identity_request_approve(identity_request=failing, approver=approver)
    identity_request_mark_provisioning(identity_request=failing)
    identity_request_mark_failed(identity_request=failing, error="AuthorizationFailed")
    assert {user for _, user, _ in rows(event="request_failed")} == {"alice", "carol"}
    # The same failure recorded again (a redelivered task) is no new event.
    identity_request_mark_failed(identity_request=failing, error="AuthorizationFailed")
    assert len(rows(event="request_failed")) == 4

    ready = file_request(service_account="api", app_name="api")
    identity_request_approve(identity_request=ready, approver=approver)
    identity_request_mark_provisioning(identity_request=ready)
    identity_request_mark_ready(identity_request=ready)
    assert {user for _, user, _ in rows(event="request_ready")} == {"alice", "carol"}


def test_writing_one_event_twice_is_a_no_op(approver: Any, file_request: FileRequest) -> None:
    pending_request = file_request()
    filed = AuditEvent.objects.get(
        identity_request=pending_request, action="identity_request.created"
    )
    before = Notification.objects.count()
    again = notifications_record(
        event=NotificationEvent.REQUEST_FILED, occurrence=filed, identity_request=pending_request
    )
    assert Notification.objects.count() == before == 2
    assert len(again) == 2  # what was asked for; the unique key kept the table as it was


def test_preferences_choose_the_events_by_email_and_the_digest(
    file_request: FileRequest, approver: Any, second_approver: Any
) -> None:
    notification_preference_save(user=approver, email_events=[], email_frequency="immediate")
    notification_preference_save(
        user=second_approver, email_events=["request_filed"], email_frequency="daily"
    )
    assert AuditEvent.objects.filter(action="notification.preferences_updated").count() == 2
    file_request()
    assert rows() == [
        ("request_filed", "sam", "inbox"),
        ("request_filed", "sara", "email"),
        ("request_filed", "sara", "inbox"),
    ]
    assert Notification.objects.get(channel="email").digest is True


def test_a_preference_naming_an_unknown_event_is_refused(approver: Any) -> None:
    with pytest.raises(DomainError, match="email_events: unknown events nonsense"):
        notification_preference_save(
            user=approver, email_events=["nonsense"], email_frequency="immediate"
        )
    with pytest.raises(DomainError, match="email_frequency: must be one of"):
        notification_preference_save(user=approver, email_events=[], email_frequency="hourly")


# --- delivery to a real SMTP server -----------------------------------------------------------


def test_delivery_sends_text_and_html_with_an_absolute_link(
    smtp_server: SmtpServer, file_request: FileRequest, approver: Any, settings: Any
) -> None:
    settings.PORTAL_BASE_URL = "https://portal.example.test"
    identity_request = file_request()
    (key,) = email_keys()

    assert tasks.deliver([key]) == {"delivered": 1}

    (message,) = smtp_server.messages
    assert message["To"] == "sam@example.test"
    assert message["Subject"] == (
        f"Request #{identity_request.pk} for checkout (payments) waits for your approval"
    )
    link = f"https://portal.example.test/requests/{identity_request.pk}/"
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "alice filed request" in text and link in text
    assert f'href="{link}"' in html
    row = Notification.objects.get(key=key)
    # The row's opaque id, not its key (which names the audit row and the recipient's id).
    assert message["Message-ID"] == f"<{row.message_id}@portal.local>"
    # (Not "the row's pk is not in it": a random id holds a small pk's digits by chance, as it
    # did on SQLite, where the pk is 2.)
    assert key not in message["Message-ID"]
    assert f"user:{row.recipient_id}" not in message["Message-ID"]
    assert (row.status, row.attempts, row.delivered_at is not None) == ("delivered", 1, True)
    # Delivered once: a redelivered message, or the sweep, sends nothing more.
    assert tasks.deliver([key]) == {"skipped": 1}
    assert tasks.sweep() == {}
    assert len(smtp_server.messages) == 1


def test_an_smtp_outage_keeps_rows_pending_until_the_server_is_back(
    smtp_server: SmtpServer,
    file_request: FileRequest,
    approver: Any,
    second_approver: Any,
    settings: Any,
) -> None:
    settings.NOTIFICATION_BACKOFF_SECONDS = 0  # due again at once, so the test need not wait
    file_request()
    smtp_server.stop()

    assert tasks.sweep() == {"retry": 2}
    pending = Notification.objects.filter(channel="email")
    assert set(pending.values_list("status", "attempts")) == {("pending", 1)}
    assert all("ConnectionRefusedError" in row.last_error for row in pending)
    assert smtp_server.messages == []

    smtp_server.start()
    assert tasks.sweep() == {"delivered": 2}
    assert sorted(m["To"] for m in smtp_server.messages) == [
        "sam@example.test",
        "sara@example.test",
    ]
    assert set(pending.values_list("status", "attempts", "last_error")) == {("delivered", 2, "")}


def test_a_failing_row_does_not_hold_the_others_back(
    smtp_server: SmtpServer,
    file_request: FileRequest,
    approver: Any,
    second_approver: Any,
    settings: Any,
) -> None:
    settings.NOTIFICATION_BACKOFF_SECONDS = 60
    smtp_server.refuse("sam@example.test")
    file_request()

    assert tasks.sweep() == {"retry": 1, "delivered": 1}
    assert [m["To"] for m in smtp_server.messages] == ["sara@example.test"]
    sam = Notification.objects.get(channel="email", recipient=approver)
    assert sam.status == DeliveryStatus.PENDING and "550" in sam.last_error
    # Backed off: not due again in this sweep, and the next waits longer.
    assert sam.next_attempt_at > sam.created_at
    assert tasks.sweep() == {}


def test_a_row_that_raises_something_unexpected_is_its_own_failed_attempt(
    smtp_server: SmtpServer,
    file_request: FileRequest,
    approver: Any,
    second_approver: Any,
    settings: Any,
) -> None:
    """Not a mail server's refusal but the message itself cannot be built (an address with a
    line break, as a directory could hand over): that row's attempt fails, the next is sent."""
    settings.NOTIFICATION_BACKOFF_SECONDS = 60
    type(approver).objects.filter(pk=approver.pk).update(email="sam@example.test\nBcc: x@y.z")
    file_request()
    sam, sara = (
        Notification.objects.get(channel="email", recipient=user)
        for user in (approver, second_approver)
    )

    assert tasks.deliver([sam.key, sara.key]) == {"retry": 1, "delivered": 1}
    assert [m["To"] for m in smtp_server.messages] == ["sara@example.test"]
    sam.refresh_from_db()
    assert (sam.status, sam.attempts) == (DeliveryStatus.PENDING, 1)
    assert sam.last_error == (
        "The delivery failed on the portal's side (ValueError); the operators' log has the details."
    )
    assert sam.next_attempt_at > sam.created_at


def test_a_row_is_given_up_after_the_last_attempt(
    smtp_server: SmtpServer, file_request: FileRequest, approver: Any, settings: Any
) -> None:
    settings.NOTIFICATION_BACKOFF_SECONDS = 0
    settings.NOTIFICATION_MAX_ATTEMPTS = 2
    smtp_server.refuse("sam@example.test")
    file_request()
    assert tasks.sweep() == {"retry": 1}
    assert tasks.sweep() == {"failed": 1}
    assert Notification.objects.get(channel="email").status == DeliveryStatus.FAILED
    assert tasks.sweep() == {}


def test_the_daily_digest_sends_one_message_for_many_events(
    smtp_server: SmtpServer, file_request: FileRequest, approver: Any
) -> None:
    notification_preference_save(
        user=approver, email_events=["request_filed"], email_frequency="daily"
    )
    first = file_request()
    second = file_request(service_account="api", app_name="api")
    assert tasks.sweep() == {}, "digest rows wait for the digest"

    assert tasks.send_digests() == {"delivered": 1}
    (message,) = smtp_server.messages
    assert message["Subject"] == "Workload Identity Portal: 2 notifications today"
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert f"/requests/{first.pk}/" in text and f"/requests/{second.pk}/" in text
    assert set(Notification.objects.filter(channel="email").values_list("status", flat=True)) == {
        "delivered"
    }
    # Not again within the day, even with something new waiting.
    file_request(service_account="web", app_name="web")
    assert tasks.send_digests() == {}


def test_a_user_without_email_gets_the_inbox_only(
    file_request: FileRequest, role_groups: None
) -> None:
    UserFactory(username="noemail", email="", in_groups=["approvers"])
    file_request()
    assert rows() == [("request_filed", "noemail", "inbox")]
    assert mail.outbox == []
    assert services.notifications_due(limit=10) == []


def test_drift_found_tells_the_identitys_team_once(
    requester: Any, teammate: Any, approver: Any, team: Any, cluster: Any
) -> None:
    identity = IdentityFactory(team=team, cluster=cluster, status="ready")
    findings = [{"kind": "role_assignment_missing", "detail": "Key Vault Secrets User on kv"}]
    _record_drift(identity, findings)
    _record_drift(identity, findings)  # the same findings again: no new event

    assert rows(event=NotificationEvent.DRIFT_DETECTED) == [
        ("drift_detected", "alice", "email"),
        ("drift_detected", "alice", "inbox"),
        ("drift_detected", "carol", "email"),
        ("drift_detected", "carol", "inbox"),
    ]


def test_recipients_and_their_preferences_are_one_statement_whatever_their_number(
    team: Any, requester: Any, teammate: Any
) -> None:
    # On the path from approval to ready (the approval's and the ready notifications): the
    # preference rows are read with their users, one join (were: a second query for them).
    from identities.selectors.notifications import team_of, with_preferences

    notification_preference_save(user=teammate, email_events=[], email_frequency="daily")

    with CaptureQueriesContext(connection) as queries:
        pairs = with_preferences(team_of(team))

    assert len(queries) == 1, [q["sql"] for q in queries.captured_queries]
    saved = {user.username: (p.pk is not None, p.email_frequency) for user, p in pairs}
    assert saved == {"alice": (False, "immediate"), "carol": (True, "daily")}


def test_an_audience_read_ahead_is_the_one_written_and_its_people_are_not_read_again(
    file_request: FileRequest, approver: Any, teammate: Any
) -> None:
    # The engine reads who hears "ready" while its last Azure calls are in flight and hands it
    # to the transaction that makes the request ready, which then reads no person.
    ready = file_request(service_account="api", app_name="api")
    identity_request_approve(identity_request=ready, approver=approver)
    identity_request_mark_provisioning(identity_request=ready)
    audience = notification_audience(NotificationEvent.REQUEST_READY, identity_request=ready)
    assert {user.username for user, _preference in audience.recipients} == {"alice", "carol"}

    with CaptureQueriesContext(connection) as queries:
        identity_request_mark_ready(identity_request=ready, audience=audience)

    read = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in read if 'FROM "auth_user"' in sql], read
    assert {user for _, user, _ in rows(event="request_ready")} == {"alice", "carol"}


def test_an_endpoint_deleted_after_the_audience_was_read_is_not_written(
    file_request: FileRequest, approver: Any, requester: Any, team: Any
) -> None:
    # Endpoints are read in the event's transaction, never ahead: a team deletes its endpoint
    # at will, and an outbox row naming it would fail the foreign key when the request's ready
    # transaction commits (its children's records with it).
    ready = file_request(service_account="api", app_name="api")
    identity_request_approve(identity_request=ready, approver=approver)
    identity_request_mark_provisioning(identity_request=ready)
    endpoint, _secret = webhook_endpoint_create(
        actor=requester, team=team, url="https://hooks.example.com/a", events=["request_ready"]
    )
    audience = notification_audience(NotificationEvent.REQUEST_READY, identity_request=ready)
    webhook_endpoint_delete(actor=requester, endpoint=endpoint)

    identity_request_mark_ready(identity_request=ready, audience=audience)
    connection.check_constraints()  # what the commit would check (deferred foreign keys)

    assert not Notification.objects.filter(channel=NotificationChannel.WEBHOOK).exists()
    assert {user for _, user, _ in rows(event="request_ready")} == {"alice"}


@pytest.mark.parametrize("mix_up", ["another event", "another request"])
def test_an_audience_read_for_another_event_or_request_is_set_aside(
    file_request: FileRequest, approver: Any, teammate: Any, mix_up: str
) -> None:
    """A read-ahead audience handed to the wrong record is set aside and the rejection's own
    people are read (the requester and their team): the filing's audience (the approvers), or
    the rejection's of another request (here made to be only the approver, so a mix-up shows)."""
    mine = file_request()
    if mix_up == "another event":
        wrong = notification_audience(NotificationEvent.REQUEST_FILED, identity_request=mine)
    else:
        other = file_request(service_account="other", app_name="other")
        wrong = dataclasses.replace(
            notification_audience(NotificationEvent.REQUEST_REJECTED, identity_request=other),
            recipients=[(approver, NotificationPreference(user=approver))],
        )
    assert {user.username for user, _preference in wrong.recipients} == {approver.username}
    identity_request_reject(identity_request=mine, approver=approver, comment="Too broad.")
    rejected = AuditEvent.objects.get(identity_request=mine, action="identity_request.rejected")
    Notification.objects.filter(event="request_rejected").delete()

    notifications_record(
        event=NotificationEvent.REQUEST_REJECTED,
        occurrence=rejected,
        identity_request=mine,
        audience=wrong,
    )

    assert {user for _, user, _ in rows(event="request_rejected")} == {"alice", "carol"}
