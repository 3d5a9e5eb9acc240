"""The audit log: filters, search, export, and whether the hash chain verifies."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.functional import cached_property
from django.views.decorators.http import require_GET, require_POST

from identities.audit.export import FORMATS, export_blocks
from identities.audit.selectors import (
    AuditEventFilters,
    ChainStatus,
    audit_chain_status,
    audit_events_visible_to,
)
from identities.errors import PermissionDeniedError
from identities.models import AuditEvent, ChainCheckTrigger
from identities.services import audit_chain_check_start
from web.forms import AUDIT_ACTION_SUGGESTIONS, AuditFilterForm
from web.views.common import (
    page,
    portal_nav,
    portal_view,
    query_without_page,
    signed_in_user,
)
from web.views.presenters import audit_rows

PAGE_SIZE = 50
# How often the audit page asks for the verdict while a check of the whole chain runs.
CHAIN_POLL_MS = 1500


class _KnownCountPaginator(Paginator):
    """A paginator told its count (Django's would run count(*) over the whole queryset)."""

    def __init__(self, object_list: QuerySet[AuditEvent], per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


def _form_values(form: AuditFilterForm) -> dict[str, Any]:
    """The filters asked for (none when the form is invalid: its errors are shown instead)."""
    return form.cleaned_data if form.is_valid() else {}


def _paginator(request: HttpRequest, form: AuditFilterForm, chain: ChainStatus | None) -> Paginator:
    """Pages of the rows shown. Someone who sees the whole trail, unfiltered, sees the chain's
    `rows` (its end: audit_record numbers rows 1, 2, 3... without gaps; a deleted row would
    make it one too many, and the chain's verdict reports that deletion), so the page need not
    count(*) a million rows."""
    events = _filtered_events(request, form)
    narrowed = any(value not in (None, "") for value in _form_values(form).values())
    if chain is None or narrowed:
        return Paginator(events, PAGE_SIZE)
    return _KnownCountPaginator(events, PAGE_SIZE, count=chain.rows)


def _filtered_events(request: HttpRequest, form: AuditFilterForm) -> QuerySet[AuditEvent]:
    """The rows the user may see (the selector decides), narrowed by the form."""
    data = _form_values(form)
    events = audit_events_visible_to(
        request.user,
        AuditEventFilters(
            action=(data.get("action") or "").strip() or None,
            identity_request_id=data.get("identity_request"),
            identity_id=data.get("identity"),
            since=form.since_datetime() if data else None,
            until=form.until_datetime() if data else None,
        ),
    )
    actor = (data.get("actor") or "").strip()
    if actor:
        events = events.filter(actor_label__iexact=actor)
    query = (data.get("q") or "").strip()
    if query:
        events = events.annotate(data_text=Cast("data", TextField())).filter(
            Q(action__icontains=query)
            | Q(actor_label__icontains=query)
            | Q(data_text__icontains=query)
        )
    return events


@portal_view
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    # The chain spans every team's rows, so only those who see everything get its verdict.
    chain = audit_chain_status(request.user)
    page_obj = _paginator(request, form, chain).get_page(request.GET.get("page"))
    return page(
        request,
        "audit/log.html",
        {
            "form": form,
            "page_obj": page_obj,
            "rows": audit_rows(page_obj.object_list),
            "chain": chain,
            "chain_poll_ms": CHAIN_POLL_MS if chain is not None and chain.running else 0,
            "filter_query": query_without_page(request),
            "action_suggestions": AUDIT_ACTION_SUGGESTIONS,
        },
        section="audit",
    )


@portal_view
@require_POST
def audit_chain_verify(request: HttpRequest) -> HttpResponse:
    """Start a walk of the whole chain by a worker (or join the one already running)."""
    check, created = audit_chain_check_start(
        actor=signed_in_user(request), trigger=ChainCheckTrigger.USER
    )
    if created:
        messages.success(
            request,
            f"Verifying the whole chain ({check.rows_expected:,} rows) in the background; "
            "this page shows the verdict when it is done.",
        )
    else:
        messages.info(request, f"Check #{check.pk} is already verifying the whole chain.")
    return redirect("audit_log")


@portal_view
@require_GET
def audit_chain_progress(request: HttpRequest) -> JsonResponse:
    """What the audit page polls while a check runs: the verdict box, re-rendered."""
    chain = audit_chain_status(request.user)
    if chain is None:
        raise PermissionDeniedError("Only approvers, auditors and admins see the chain's state.")
    context = {"chain": chain, "nav": portal_nav(request.user)}
    summary = (
        f"Check #{chain.running.pk} is verifying the whole chain."
        if chain.running
        else chain_summary(chain)
    )
    return JsonResponse(
        {
            "status": "running" if chain.running else "idle",
            "summary": summary,
            "poll_ms": CHAIN_POLL_MS if chain.running else 0,
            "html": {
                "chain-status": render_to_string(
                    "audit/_chain_status.html", context, request=request
                )
            },
        }
    )


def chain_summary(chain: ChainStatus) -> str:
    """One sentence for screen readers when the verdict changes."""
    if chain.ok is None:
        return "The whole chain has not been verified yet."
    if chain.ok:
        return f"Chain verified: {chain.rows:,} rows."
    return f"Chain broken at row {chain.broken_id}: {chain.reason}"


@portal_view
@require_GET
def audit_export(request: HttpRequest) -> StreamingHttpResponse | HttpResponse:
    """The filtered rows in chain order with both hashes, as CSV or JSON lines; the whole chain
    (no filters) can be re-verified offline from the export."""
    form = AuditFilterForm(request.GET or None)
    events = _filtered_events(request, form).order_by("id")
    fmt = request.GET.get("format", "csv")
    if fmt not in FORMATS:
        return HttpResponse("format must be csv or jsonl", status=400, content_type="text/plain")
    content_type = {
        "csv": "text/csv; charset=utf-8",
        "jsonl": "application/x-ndjson; charset=utf-8",
    }[fmt]
    response = StreamingHttpResponse(export_blocks(events, fmt), content_type=content_type)
    filename = f"audit-{timezone.now():%Y%m%dT%H%M%SZ}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
