"""Who is told about what, and each person's own inbox and preferences (nobody else's)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from identities import roles
from identities.models import (
    EmailFrequency,
    IdentityRequest,
    Notification,
    NotificationChannel,
    NotificationEvent,
    NotificationPreference,
    Team,
)

INBOX_PAGE_SIZE = 50
UNREAD_SHOWN_MAX = 99


def approvers_of(identity_request: IdentityRequest) -> QuerySet[Any]:
    """Who may approve a pending request: the security approvers, and for a cross-team scope
    the members of each owning team (their resource; `Approval.on_behalf_of`). Never the
    requester, who cannot approve their own request."""
    owner_teams = identity_request.owner_teams.all()
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name=roles.APPROVERS) | Q(team_memberships__team__in=owner_teams))
        .exclude(pk=identity_request.requester_id)
        .distinct()
    )


def team_of(team: Team | int, *, also: Any = None) -> QuerySet[Any]:
    """The active members of a team, plus `also` (the requester, who may have left it)."""
    team_id = team if isinstance(team, int) else team.pk
    who = Q(team_memberships__team_id=team_id)
    if also is not None:
        who |= Q(pk=also.pk if hasattr(also, "pk") else also)
    return get_user_model().objects.filter(is_active=True).filter(who).distinct()


def preferences_of(users: list[Any]) -> dict[int, NotificationPreference]:
    """Each user's saved preferences (one query); users without a row get the defaults."""
    saved = {
        preference.user_id: preference
        for preference in NotificationPreference.objects.filter(user__in=users)
    }
    return {user.pk: saved.get(user.pk) or NotificationPreference(user=user) for user in users}


def notification_preference_for(user: Any) -> NotificationPreference:
    """The signed-in user's preferences (an unsaved default row when they never saved any)."""
    return NotificationPreference.objects.filter(user=user).first() or NotificationPreference(
        user=user
    )


def inbox_for(user: Any) -> QuerySet[Notification]:
    """The user's own in-portal notifications, newest first."""
    if not getattr(user, "is_authenticated", False):
        return Notification.objects.none()
    return Notification.objects.filter(
        recipient=user, channel=NotificationChannel.INBOX
    ).select_related("identity_request", "identity")


def unread_count(user: Any) -> int:
    """Unread inbox rows, counted up to UNREAD_SHOWN_MAX + 1 (the nav shows "99+")."""
    if not getattr(user, "is_authenticated", False):
        return 0
    unread = Notification.objects.filter(
        recipient=user, channel=NotificationChannel.INBOX, read_at__isnull=True
    ).values_list("pk", flat=True)
    return len(unread[: UNREAD_SHOWN_MAX + 1])


def wants_email(preference: NotificationPreference, event: NotificationEvent) -> bool:
    return str(event) in preference.email_events


def is_digest(preference: NotificationPreference) -> bool:
    return preference.email_frequency == EmailFrequency.DAILY
