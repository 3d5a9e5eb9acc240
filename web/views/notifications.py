"""The signed-in user's own notifications: the inbox (mark read) and email preferences."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from identities.errors import DomainError
from identities.selectors.notifications import (
    INBOX_PAGE_SIZE,
    inbox_for,
    notification_preference_for,
)
from identities.services import notification_preference_save, notifications_mark_read
from web.forms import NotificationPreferenceForm
from web.views.common import page, portal_view, query_without_page, signed_in_user


@require_GET
@portal_view
def notification_inbox(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    paginator = Paginator(inbox_for(user), INBOX_PAGE_SIZE)
    notifications = paginator.get_page(request.GET.get("page"))
    return page(
        request,
        "notifications/inbox.html",
        {"page_obj": notifications, "query": query_without_page(request)},
        section="inbox",
    )


@require_POST
@portal_view
def notification_read(request: HttpRequest) -> HttpResponse:
    """Mark one notification read (`id`) or all of them; only the user's own ever change."""
    user = signed_in_user(request)
    raw = request.POST.get("id", "")
    if raw and not raw.isdigit():
        messages.error(request, "id: must be the number of one of your notifications.")
        return redirect("notification_inbox")
    changed = notifications_mark_read(user=user, notification_ids=[int(raw)] if raw else None)
    messages.success(request, f"Marked {changed} notification{'s' if changed != 1 else ''} read.")
    return redirect("notification_inbox")


@portal_view
def notification_preferences(request: HttpRequest) -> HttpResponse:
    user = signed_in_user(request)
    preference = notification_preference_for(user)
    if request.method == "POST":
        form = NotificationPreferenceForm(request.POST)
        if form.is_valid():
            try:
                notification_preference_save(
                    user=user,
                    email_events=list(form.cleaned_data["email_events"]),
                    email_frequency=form.cleaned_data["email_frequency"],
                )
            except DomainError as error:
                form.add_error(None, error.message)
            else:
                messages.success(request, "Your notification preferences are saved.")
                return redirect("notification_preferences")
        status = 400
    else:
        form = NotificationPreferenceForm(
            initial={
                "email_events": preference.email_events,
                "email_frequency": preference.email_frequency,
            }
        )
        status = 200
    return page(
        request,
        "notifications/preferences.html",
        {"form": form, "email": user.email},
        status=status,
        section="inbox",
    )
