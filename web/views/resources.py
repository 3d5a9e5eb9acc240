"""Your teams' resources in Azure, searched and paged on the server: the request form's
no-JavaScript way to find a scope (its rows' ids are there to copy into the form)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from identities.scope_lookup import ScopeLookupUnavailable
from identities.selectors import catalog_roles
from identities.selectors.resources import resources_for
from web.forms import ResourceSearchForm
from web.views.common import page, portal_view, query_without_page

PAGE_SIZE = 50


@portal_view
@require_GET
def resource_search(request: HttpRequest) -> HttpResponse:
    """GET `q` (part of a name or id), `role` (only the types it is meant for), `team` (one of
    yours; approvers: any) and `page`. A team that is not the user's to see is a 404."""
    form = ResourceSearchForm(request.GET or None, roles=[role.name for role in catalog_roles()])
    page_obj, error, searched = None, "", form.is_bound and form.is_valid()
    if searched or not form.is_bound:
        data = form.cleaned_data if searched else {}
        try:
            found = resources_for(
                request.user,
                team=data.get("team", ""),
                q=data.get("q", ""),
                role=data.get("role", ""),
            )
        except ScopeLookupUnavailable as failure:
            error = str(failure)[:300]
        else:
            page_obj = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    return page(
        request,
        "requests/resources.html",
        {
            "form": form,
            "page_obj": page_obj,
            "error": error,
            "filter_query": query_without_page(request),
        },
        section="new",
    )
