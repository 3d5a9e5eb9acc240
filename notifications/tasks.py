"""Celery tasks of the outbox: keys in, one service call each.

`deliver` runs on commit of the event (identities.work.Work.DELIVER_NOTIFICATIONS); `sweep` runs
on the beat and sends whatever is due (a lost message, a retry whose time came); `send_digests`
runs on the beat and sends the daily digests. A row failing is rescheduled on the row itself, so
the task never raises for it and never holds the others back.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from notifications import services


@shared_task(name="notifications.deliver")
def deliver(keys: list[str]) -> dict[str, int]:
    """Send these outbox rows now (those still pending and due); a failed one is retried by a
    later `deliver` at its backoff time, and by the sweep if that message is lost too."""
    counts: dict[str, int] = {}
    retry: list[str] = []
    with services.MailSession() as mail:
        for key in keys:
            outcome = services.notification_deliver(key=key, mail=mail)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == "retry":
                retry.append(key)
    if retry:
        deliver.apply_async(args=(retry,), countdown=settings.NOTIFICATION_BACKOFF_SECONDS)
    return counts


@shared_task(name="notifications.sweep")
def sweep() -> dict[str, int]:
    """Scheduled: send every due row (lost enqueues, retries after an outage)."""
    return services.deliver_due()


@shared_task(name="notifications.send_digests")
def send_digests() -> dict[str, int]:
    """Scheduled: one message per person on the daily digest with something waiting."""
    counts: dict[str, int] = {}
    for user_id in services.digests_due():
        outcome = services.digest_deliver(user_id=user_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
