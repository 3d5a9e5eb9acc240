"""The audit log: filters, search, export, and whether the hash chain verifies."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from identities.audit import EXPORT_FIELDS, audit_verify_chain, canonical_json, event_payload
from identities.forms import AUDIT_ACTION_SUGGESTIONS, AuditFilterForm
from identities.models import AuditEvent
from identities.selectors import AuditEventFilters, audit_events_visible_to
from identities.views.common import page, portal_nav, portal_view, query_without_page
from identities.views.presenters import audit_rows

PAGE_SIZE = 50


def _filtered_events(request: HttpRequest, form: AuditFilterForm) -> QuerySet[AuditEvent]:
    """The rows the user may see (the selector decides), narrowed by the form."""
    data: dict[str, Any] = form.cleaned_data if form.is_valid() else {}
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
    events = _filtered_events(request, form)
    page_obj = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    # The chain spans every team's rows, so only those who see everything get its verdict.
    chain = audit_verify_chain() if portal_nav(request.user).sees_everything else None
    return page(
        request,
        "audit/log.html",
        {
            "form": form,
            "page_obj": page_obj,
            "rows": audit_rows(page_obj.object_list),
            "chain": chain,
            "filter_query": query_without_page(request),
            "action_suggestions": AUDIT_ACTION_SUGGESTIONS,
        },
        section="audit",
    )


def _export_row(event: AuditEvent) -> dict[str, Any]:
    return {**event_payload(event), "prev_hash": event.prev_hash, "hash": event.hash}


def _csv_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(EXPORT_FIELDS))
    writer.writeheader()
    for event in events.iterator(chunk_size=2000):
        row = _export_row(event)
        row["data"] = canonical_json(row["data"])
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
    yield buffer.getvalue()


def _jsonl_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    for event in events.iterator(chunk_size=2000):
        yield json.dumps(_export_row(event), sort_keys=True) + "\n"


@portal_view
@require_GET
def audit_export(request: HttpRequest) -> StreamingHttpResponse | HttpResponse:
    """The filtered rows in chain order with both hashes, as CSV or JSON lines; the whole chain
    (no filters) can be re-verified offline from the export."""
    form = AuditFilterForm(request.GET or None)
    events = _filtered_events(request, form).order_by("id")
    fmt = request.GET.get("format", "csv")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if fmt == "jsonl":
        response = StreamingHttpResponse(
            _jsonl_lines(events), content_type="application/x-ndjson; charset=utf-8"
        )
        filename = f"audit-{stamp}.jsonl"
    elif fmt == "csv":
        response = StreamingHttpResponse(_csv_lines(events), content_type="text/csv; charset=utf-8")
        filename = f"audit-{stamp}.csv"
    else:
        return HttpResponse("format must be csv or jsonl", status=400, content_type="text/plain")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
