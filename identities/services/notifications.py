"""The notification outbox's writes: rows written beside the state change that caused them,
and each person's own read marks and preferences.

`notifications_record` runs inside the caller's transaction (the service that moved the state and
wrote its audit row), so a notification exists exactly when its event committed. Delivery is a
side effect of the `notifications` app, asked for on commit through `identities.work`; a lost
message is picked up by its periodic sweep, so the broker is never the only record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.errors import DomainError
from identities.models import (
    AuditEvent,
    EmailFrequency,
    Identity,
    IdentityRequest,
    Notification,
    NotificationChannel,
    NotificationEvent,
    NotificationPreference,
    WebhookEndpoint,
)
from identities.selectors.notifications import (
    Audience,
    event_endpoints,
    is_digest,
    notification_audience,
    wants_email,
)
from identities.work import Work, enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def notifications_record(
    *,
    event: NotificationEvent,
    occurrence: AuditEvent,
    identity_request: IdentityRequest | None = None,
    identity: Identity | None = None,
    endpoint: WebhookEndpoint | None = None,
    data: dict[str, Any] | None = None,
    audience: Audience | None = None,
) -> list[Notification]:
    """Write the outbox rows of one event (call it inside the transaction that made it happen):
    an inbox row for each recipient, and an email row where their preferences ask for one. The
    key (the event's audit row, the recipient, the channel) makes a second write a no-op.
    Webhook endpoints subscribed to the event get a row each: the team's own (and, for a filing,
    the owning teams'), and the global ones. With NOTIFICATIONS_ENABLED off nothing is
    written (the state change and its audit row are unaffected).

    `audience`: the people the event is told to, when the caller read them ahead of this
    transaction (`notification_audience`); read here otherwise, and also when it was read for
    another event or other subjects. The endpoints are read here always (see
    `notification_audience`)."""
    if not settings.NOTIFICATIONS_ENABLED:
        return []
    if audience is None or not audience.is_for(event, identity_request, identity):
        audience = notification_audience(
            event, identity_request=identity_request, identity=identity, endpoint=endpoint
        )
    rows: list[Notification] = []
    now = timezone.now()
    for user, preference in audience.recipients:
        common = {
            "event": event,
            "recipient": user,
            "identity_request": identity_request,
            "identity": identity,
            "data": data or {},
            "created_at": now,
            "next_attempt_at": now,
        }
        rows.append(
            Notification(
                key=_key(occurrence, user, NotificationChannel.INBOX),
                channel=NotificationChannel.INBOX,
                status=Notification.Status.DELIVERED,
                delivered_at=now,
                **common,
            )
        )
        if user.email and wants_email(preference, event):
            rows.append(
                Notification(
                    key=_key(occurrence, user, NotificationChannel.EMAIL),
                    channel=NotificationChannel.EMAIL,
                    digest=is_digest(preference),
                    **common,
                )
            )
    for subscribed in event_endpoints(event, identity_request=identity_request, identity=identity):
        rows.append(
            Notification(
                key=f"audit:{occurrence.pk}:webhook:{subscribed.pk}",
                channel=NotificationChannel.WEBHOOK,
                endpoint=subscribed,
                event=event,
                identity_request=identity_request,
                identity=identity,
                data=data or {},
                created_at=now,
                next_attempt_at=now,
            )
        )
    written = Notification.objects.bulk_create(rows, ignore_conflicts=True)
    # One message per channel: a slow webhook receiver never holds up the emails, or back.
    batches = [
        keys
        for channel in (NotificationChannel.EMAIL, NotificationChannel.WEBHOOK)
        if (keys := [row.key for row in written if row.channel == channel and not row.digest])
    ]
    if batches:
        # robust: a broker outage must not undo the state change; the sweep sends them later.
        transaction.on_commit(lambda: _enqueue_all(batches), robust=True)
    return written


def _enqueue_all(batches: list[list[str]]) -> None:
    for keys in batches:
        enqueue(Work.DELIVER_NOTIFICATIONS, keys)


def _key(occurrence: AuditEvent, user: Any, channel: str) -> str:
    return f"audit:{occurrence.pk}:user:{user.pk}:{channel}"


# --- the recipient's own writes --------------------------------------------------------------


@transaction.atomic
def notifications_mark_read(*, user: User, notification_ids: list[int] | None = None) -> int:
    """Mark the user's own inbox rows read (all unread ones when no ids are given); another
    person's ids are ignored. Returns how many changed. The read mark is the reader's own view,
    not a state change of the portal, so it writes no audit row."""
    unread = Notification.objects.filter(
        recipient=user, channel=NotificationChannel.INBOX, read_at__isnull=True
    )
    if notification_ids is not None:
        unread = unread.filter(pk__in=notification_ids)
    return unread.update(read_at=timezone.now())


@transaction.atomic(durable=True)
def notification_preference_save(
    *, user: User, email_events: list[str], email_frequency: str
) -> NotificationPreference:
    """Save which events the user wants by email and how often, with its audit row."""
    unknown = sorted(set(email_events) - set(NotificationEvent.values))
    if unknown:
        raise DomainError(f"email_events: unknown events {', '.join(unknown)}.")
    if email_frequency not in EmailFrequency.values:
        raise DomainError(
            f"email_frequency: must be one of {', '.join(EmailFrequency.values)}, "
            f"got {email_frequency!r}."
        )
    ordered = [event for event in NotificationEvent.values if event in set(email_events)]
    preference, _ = NotificationPreference.objects.update_or_create(
        user=user,
        defaults={
            "email_events": ordered,
            "email_frequency": email_frequency,
            "updated_at": timezone.now(),
        },
    )
    audit_record(
        actor=user,
        action=AuditAction.NOTIFICATION_PREFERENCES_UPDATED,
        data={"email_events": ordered, "email_frequency": email_frequency},
    )
    return preference
