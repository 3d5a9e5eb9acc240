"""What every page shares: rendering with the navigation, domain errors as HTTP, JSON answers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from identities import roles
from identities.errors import DomainError, NotFoundError, PermissionDeniedError
from identities.selectors import owner_approvals_waiting
from identities.selectors.notifications import UNREAD_SHOWN_MAX, unread_count

if TYPE_CHECKING:
    from django.contrib.auth.models import User

P = ParamSpec("P")


@dataclass(frozen=True)
class PortalNav:
    """Which sections the signed-in user's roles open (the server still checks every action)."""

    is_requester: bool
    is_approver: bool
    is_auditor: bool
    is_admin: bool
    sees_everything: bool
    # Other teams' requests waiting for this user's team, as owner of a scope they ask for.
    owner_approvals: int = 0
    # Unread notifications in the user's inbox (counted up to 100: the nav shows "99+").
    unread: int = 0

    @property
    def unread_label(self) -> str:
        return f"{UNREAD_SHOWN_MAX}+" if self.unread > UNREAD_SHOWN_MAX else str(self.unread)

    @property
    def has_approvals(self) -> bool:
        return self.is_approver or self.owner_approvals > 0


def portal_nav(user: Any) -> PortalNav:
    is_approver = roles.is_approver(user)
    return PortalNav(
        is_requester=roles.is_requester(user),
        is_approver=is_approver,
        is_auditor=roles.is_auditor(user),
        is_admin=roles.is_admin(user),
        sees_everything=roles.sees_everything(user),
        owner_approvals=0 if is_approver else owner_approvals_waiting(user),
        unread=unread_count(user),
    )


def page(
    request: HttpRequest,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    section: str = "",
) -> HttpResponse:
    """Render a page of the portal: `section` marks the current navigation entry."""
    return render(
        request,
        template,
        {"nav": portal_nav(request.user), "section": section, **(context or {})},
        status=status,
    )


def refused(request: HttpRequest, error: DomainError) -> HttpResponse:
    """The page for a domain refusal: 404 for missing or invisible objects, 403 otherwise."""
    if isinstance(error, NotFoundError):
        return page(request, "errors/not_found.html", {"message": error.message}, status=404)
    return page(request, "errors/forbidden.html", {"message": error.message}, status=403)


def portal_view(view: Callable[P, HttpResponseBase]) -> Callable[P, HttpResponseBase]:
    """Sign-in required; NotFoundError and PermissionDeniedError from selectors and services
    become the 404 and 403 pages (the two are deliberately alike for invisible objects)."""

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        request = args[0]
        assert isinstance(request, HttpRequest)  # noqa: S101 - every view takes the request first
        try:
            return view(*args, **kwargs)
        except (NotFoundError, PermissionDeniedError) as error:
            if request.headers.get("Accept", "").startswith("application/json"):
                status = 404 if isinstance(error, NotFoundError) else 403
                return JsonResponse({"error": error.message}, status=status)
            return refused(request, error)

    return login_required(wrapped)


def signed_in_user(request: HttpRequest) -> User:
    """The user behind a `portal_view` request (sign-in is already required there)."""
    user = request.user
    if not user.is_authenticated:
        raise PermissionDeniedError("Sign in first.")
    return user


def query_without_page(request: HttpRequest) -> str:
    """The page's query string minus `page`, for pagination links that keep the filters."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def back(request: HttpRequest, fallback: str) -> HttpResponse:
    """Redirect to the `next` field when it is a local URL, else to `fallback`."""
    target = str(request.POST.get("next") or "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


def action_outcome(
    request: HttpRequest, action: Callable[[], Any], *, done: str, fallback: str
) -> HttpResponse:
    """Run a state-changing service call from a POST: a success message, or the domain's own
    explanation of a refusal (conflicts and policy findings); then back to the page."""
    try:
        action()
    except (NotFoundError, PermissionDeniedError):
        raise
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, done)
    return back(request, fallback)
