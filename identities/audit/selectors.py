"""Reads of the audit trail and of its chain checks: who may see which events, the newest
anchor, the chain verdict shown on the audit page."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from identities import roles
from identities.audit.actions import ACTION_FILTER_FAMILIES
from identities.audit.chain import chain_end, check_is_authentic, stored_hash, verify_tail
from identities.models import (
    GENESIS_HASH,
    AuditChainCheck,
    AuditEvent,
    ChainCheckStatus,
)
from identities.selectors.people import teams_of

# --- audit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEventFilters:
    action: str | None = None  # exact, or a prefix ending in "." ("identity_request.")
    identity_request_id: int | None = None
    identity_id: int | None = None
    actor_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def events_with_action(queryset: QuerySet[AuditEvent], action: str) -> QuerySet[AuditEvent]:
    """Rows with exactly `action` (and its family: `identity_request.approved` finds every
    approval, the first of two included), or every action under a prefix ending in a dot
    (`identity_request.`)."""
    if action.endswith("."):
        return queryset.filter(action__startswith=action)
    family = ACTION_FILTER_FAMILIES.get(action)
    if family:
        return queryset.filter(action__in=[str(member) for member in family])
    return queryset.filter(action=action)


def audit_events_visible_to(
    user: Any, filters: AuditEventFilters | None = None
) -> QuerySet[AuditEvent]:
    """Audit rows, newest first. Requesters see rows about their teams' requests and identities."""
    queryset = AuditEvent.objects.select_related("actor", "identity_request", "identity")
    if not roles.sees_everything(user):
        if not getattr(user, "is_authenticated", False):
            return queryset.none()
        teams = teams_of(user)
        queryset = queryset.filter(
            Q(identity_request__team__in=teams) | Q(identity__team__in=teams)
        )
    filters = filters or AuditEventFilters()
    if filters.action:
        queryset = events_with_action(queryset, filters.action)
    if filters.identity_request_id is not None:
        queryset = queryset.filter(identity_request_id=filters.identity_request_id)
    if filters.identity_id is not None:
        queryset = queryset.filter(identity_id=filters.identity_id)
    if filters.actor_id is not None:
        queryset = queryset.filter(actor_id=filters.actor_id)
    if filters.since is not None:
        queryset = queryset.filter(created_at__gte=filters.since)
    if filters.until is not None:
        queryset = queryset.filter(created_at__lt=filters.until)
    return queryset.order_by("-id")


# --- audit chain checks ----------------------------------------------------------------------


def chain_check_stale_after() -> timedelta:
    """A check still running after this was abandoned (its worker died): as long as a task
    may run at all."""
    return timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)


def audit_chain_check_running() -> AuditChainCheck | None:
    """The check a worker is running now, if any (abandoned ones do not count)."""
    return (
        AuditChainCheck.objects.filter(
            status=ChainCheckStatus.RUNNING,
            started_at__gte=timezone.now() - chain_check_stale_after(),
        )
        .select_related("requested_by")
        .order_by("-started_at")
        .first()
    )


def audit_chain_anchor(*, before: AuditChainCheck | None = None) -> AuditChainCheck | None:
    """The newest passed check whose signature holds (finished before `before` started)."""
    passed = AuditChainCheck.objects.filter(status=ChainCheckStatus.PASSED)
    if before is not None:
        passed = passed.filter(finished_at__lte=before.started_at).exclude(pk=before.pk)
    for check in passed.order_by("-finished_at", "-id")[:20]:
        if check_is_authentic(check):
            return check
    return None


@dataclass(frozen=True)
class ChainStatus:
    """What the audit page says about the whole chain, from the newest full check plus a live
    walk of the rows added since (when there are few enough of them).

    `ok` is None when the chain is too long to walk on a page view and no full check has
    passed or failed yet."""

    ok: bool | None
    rows: int
    full_check: AuditChainCheck | None = None  # the newest finished full check (passed/failed)
    tail_rows: int = 0  # rows after the part the full check verified
    tail_verified: bool = False  # those rows were walked for this status
    broken_id: int | None = None
    reason: str = ""
    found_by: str = ""  # which check found the break
    forged: bool = False  # full_check's record does not carry its signature
    running: AuditChainCheck | None = None
    last_error: AuditChainCheck | None = None  # a newer check that could not finish
    newest_hash: str = ""


def audit_chain_status(user: Any, *, tail_limit: int | None = None) -> ChainStatus | None:
    """The chain's verdict for the audit page; None for users who do not see every row."""
    if not roles.sees_everything(user):
        return None
    if tail_limit is None:
        tail_limit = settings.AUDIT_TAIL_VERIFY_LIMIT
    rows = chain_end()
    running = audit_chain_check_running()
    finished = AuditChainCheck.objects.exclude(status=ChainCheckStatus.RUNNING).select_related(
        "requested_by"
    )
    full = (
        finished.filter(status__in=[ChainCheckStatus.PASSED, ChainCheckStatus.FAILED])
        .order_by("-finished_at", "-id")
        .first()
    )
    errors = finished.filter(status=ChainCheckStatus.ERROR)
    if full is not None:
        errors = errors.filter(finished_at__gt=full.finished_at)
    base = ChainStatus(
        ok=None,
        rows=rows,
        full_check=full,
        running=running,
        last_error=errors.order_by("-finished_at").first(),
    )
    if full is not None and not check_is_authentic(full):
        return replace(
            base,
            ok=False,
            forged=True,
            reason=(
                f"the record of check #{full.pk} was altered in the database: its verdict does "
                "not carry the portal's signature"
            ),
            found_by=f"check #{full.pk}",
        )
    if full is not None and full.status == ChainCheckStatus.FAILED:
        return replace(
            base,
            ok=False,
            broken_id=full.broken_id,
            reason=full.reason,
            found_by=f"check #{full.pk}",
        )
    after_id, after_hash = 0, GENESIS_HASH
    if full is not None and full.last_id is not None:
        after_id, after_hash = full.last_id, full.last_hash
        current = stored_hash(after_id)
        if current != after_hash:
            gone = current is None
            return replace(
                base,
                ok=False,
                broken_id=after_id,
                reason=(
                    f"row {after_id}, the last one check #{full.pk} verified, "
                    + (
                        "is gone: rows were removed from the end of the chain"
                        if gone
                        else "no longer has the hash it verified: the chain was rewritten up to it"
                    )
                ),
                found_by=f"comparing with check #{full.pk}",
            )
    tail_rows = max(rows - after_id, 0)
    if tail_rows > tail_limit:
        return replace(
            base,
            ok=True if full is not None else None,
            tail_rows=tail_rows,
            newest_hash=after_hash if full is not None else "",
        )
    walk = verify_tail(after_id=after_id, after_hash=after_hash)
    found_by = (
        f"checking the {tail_rows} rows added since check #{full.pk}"
        if full is not None
        else f"checking all {tail_rows} rows"
    )
    return replace(
        base,
        ok=walk.broken_id is None,
        tail_rows=tail_rows,
        tail_verified=True,
        broken_id=walk.broken_id,
        reason=walk.reason,
        found_by=found_by,
        newest_hash=walk.last_hash,
    )
