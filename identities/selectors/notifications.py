"""Who is told about what, and each person's own inbox and preferences (nobody else's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from identities import roles
from identities.errors import NotFoundError
from identities.models import (
    EmailFrequency,
    Identity,
    IdentityRequest,
    Notification,
    NotificationChannel,
    NotificationEvent,
    NotificationPreference,
    Team,
    WebhookDelivery,
    WebhookEndpoint,
)

INBOX_PAGE_SIZE = 50
UNREAD_SHOWN_MAX = 99

# Events told to the requester and their team (a request's outcome).
TEAM_EVENTS = frozenset(
    {
        NotificationEvent.REQUEST_APPROVED,
        NotificationEvent.REQUEST_REJECTED,
        NotificationEvent.REQUEST_SENT_BACK,
        NotificationEvent.REQUEST_READY,
        NotificationEvent.REQUEST_FAILED,
    }
)


@dataclass(frozen=True)
class Audience:
    """The people one event is told to, each with their preferences, and what it was read for
    (the event and its subjects' ids), so that it is never used for another."""

    event: NotificationEvent
    subjects: tuple[int | None, int | None]  # the request's id, the identity's id
    recipients: list[tuple[Any, NotificationPreference]]

    def is_for(
        self,
        event: NotificationEvent,
        identity_request: IdentityRequest | None,
        identity: Identity | None,
    ) -> bool:
        return (self.event, self.subjects) == (event, _subjects(identity_request, identity))


def _subjects(
    identity_request: IdentityRequest | None, identity: Identity | None
) -> tuple[int | None, int | None]:
    return (
        identity_request.pk if identity_request is not None else None,
        identity.pk if identity is not None else None,
    )


def notification_audience(
    event: NotificationEvent,
    *,
    identity_request: IdentityRequest | None = None,
    identity: Identity | None = None,
    endpoint: WebhookEndpoint | None = None,
) -> Audience:
    """The people `event` about these subjects is told to, as the teams are now (one query).

    `notifications_record` reads it in the event's transaction unless its caller read it ahead:
    the engine does, while its last Azure calls are in flight, so a member who joins the team
    in those moments misses the ready notice, as one who joins just after it would.

    An outbox row naming someone deleted meanwhile would fail its foreign key at the commit.
    The portal never deletes a person (it deactivates); a superuser may, in the Django admin,
    delete someone no audit row names. Should that fall in those moments, the ready commit
    fails, the request stays provisioning and the sweeper runs it again, reading afresh.
    Webhook endpoints, which teams delete at will, are not part of it: they are always read in
    the transaction that writes their rows (`event_endpoints`)."""
    return Audience(
        event=event,
        subjects=_subjects(identity_request, identity),
        recipients=with_preferences(
            _recipients(
                event, identity_request=identity_request, identity=identity, endpoint=endpoint
            )
        ),
    )


def event_endpoints(
    event: NotificationEvent,
    *,
    identity_request: IdentityRequest | None,
    identity: Identity | None,
) -> list[WebhookEndpoint]:
    """The active webhook endpoints subscribed to `event`: the subject's team's (and, for a
    filing, the owning teams'), and the global ones."""
    if event == NotificationEvent.WEBHOOK_DISABLED:
        return []  # told to people; the endpoint that failed would not hear it
    if identity_request is not None:
        teams = {identity_request.team_id}
        if event == NotificationEvent.REQUEST_FILED:
            teams |= set(identity_request.owner_teams.values_list("pk", flat=True))
    else:
        assert identity is not None  # noqa: S101 - every event is about a request or identity
        teams = {identity.team_id}
    candidates = WebhookEndpoint.objects.filter(is_active=True).filter(
        Q(team__isnull=True) | Q(team_id__in=teams)
    )
    # Chosen events are a short JSON list: filtered here, the same on every database.
    return [endpoint for endpoint in candidates if str(event) in endpoint.events]


def _recipients(
    event: NotificationEvent,
    *,
    identity_request: IdentityRequest | None,
    identity: Identity | None,
    endpoint: WebhookEndpoint | None,
) -> QuerySet[Any]:
    if event == NotificationEvent.WEBHOOK_DISABLED:
        assert endpoint is not None  # noqa: S101 - the disabled endpoint
        return endpoint_managers(endpoint)
    if event == NotificationEvent.REQUEST_FILED:
        assert identity_request is not None  # noqa: S101 - a filing is about a request
        return approvers_of(identity_request)
    if event in TEAM_EVENTS:
        assert identity_request is not None  # noqa: S101 - an outcome is about a request
        return team_of(identity_request.team_id, also=identity_request.requester_id)
    assert identity is not None  # noqa: S101 - drift is about an identity
    return team_of(identity.team_id)


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


def may_manage_endpoint(
    user: Any, endpoint: WebhookEndpoint | None, *, team: Team | None = None
) -> bool:
    """A team's endpoints: its members and admins. Global ones (no team): security's approvers
    and admins. Pass `team` (or None for global) when there is no endpoint yet."""
    owner = endpoint.team if endpoint is not None else team
    if roles.is_admin(user):
        return True
    if owner is None:
        return roles.is_approver(user)
    return bool(getattr(user, "is_authenticated", False)) and (
        Team.objects.filter(pk=owner.pk, memberships__user=user).exists()
    )


def endpoint_managers(endpoint: WebhookEndpoint) -> QuerySet[Any]:
    """Who is told about an endpoint (its disabling): the team, or security for a global one."""
    if endpoint.team_id is not None:
        return team_of(endpoint.team_id)
    return get_user_model().objects.filter(is_active=True, groups__name=roles.APPROVERS).distinct()


def webhook_endpoints_visible_to(user: Any) -> QuerySet[WebhookEndpoint]:
    """The endpoints `user` may see and manage: their teams'; global ones for security and
    admins (admins see all)."""
    if not getattr(user, "is_authenticated", False):
        return WebhookEndpoint.objects.none()
    if roles.is_admin(user):
        return WebhookEndpoint.objects.select_related("team")
    mine = Q(team__memberships__user=user)
    if roles.is_approver(user):
        mine |= Q(team__isnull=True)
    return WebhookEndpoint.objects.filter(mine).select_related("team").distinct()


def webhook_endpoint_get(user: Any, pk: int) -> WebhookEndpoint:
    """One endpoint `user` may manage; another team's is as unknown as a missing one."""
    endpoint = webhook_endpoints_visible_to(user).filter(pk=pk).first()
    if endpoint is None:
        raise NotFoundError(f"Webhook endpoint {pk} was not found.")
    return endpoint


def webhook_deliveries_of(endpoint: WebhookEndpoint, *, limit: int = 100) -> list[WebhookDelivery]:
    """The endpoint's newest delivery attempts (the delivery log)."""
    return list(endpoint.deliveries.select_related("notification")[:limit])


def with_preferences(users: QuerySet[Any]) -> list[tuple[Any, NotificationPreference]]:
    """Each user with their saved preferences (the defaults when they never saved any), in one
    query: the preference row is read with its user (a reverse one-to-one join)."""
    pairs = []
    for user in users.select_related("notification_preference"):
        try:
            preference = user.notification_preference  # read with the user: no query
        except NotificationPreference.DoesNotExist:
            preference = NotificationPreference(user=user)
        pairs.append((user, preference))
    return pairs


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
