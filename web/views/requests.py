"""Identity requests: the list, the detail page with live progress, and the actions on a request
(cancel, retry, verify, manifests). The new-request form is in `request_form`."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from identities.audit.actions import AuditAction
from identities.audit.selectors import AuditEventFilters, audit_events_visible_to
from identities.errors import ConflictError
from identities.handover import handover_document
from identities.handover_spec import handover_spec_for
from identities.manifests import (
    DEFAULT_BUNDLE_KINDS,
    MANIFEST_KINDS,
    HandoverSpec,
    InvalidHandoverSpec,
    render_bundle,
    render_one,
)
from identities.models import (
    REQUEST_STATUSES_IN_FLIGHT,
    AuditEvent,
    IdentityRequest,
    RequestKind,
    RequestStatus,
    RoleChange,
)
from identities.next_steps import NextSteps, next_steps
from identities.policy import RoleDraft
from identities.selectors import (
    approval_item,
    catalog_roles,
    identity_request_get,
    identity_requests_visible_to,
    request_revisions,
    role_change_from_wanted,
)
from identities.services import (
    identity_request_cancel,
    identity_request_resubmit,
    identity_request_retry,
    identity_request_revise,
)
from provisioning.selectors import request_steps, request_verifications
from provisioning.services import verification_enqueue
from web.filters import RequestListFilter, apply_filters
from web.forms import ChangeRoleFormSet, DecisionForm, DecommissionForm, ResubmitForm
from web.views.common import (
    action_outcome,
    page,
    portal_nav,
    portal_view,
    query_without_page,
    signed_in_user,
)
from web.views.presenters import (
    audit_rows,
    change_lines,
    cluster_cleanup,
    identity_gone,
    provisioning_progress,
    request_actions,
    request_timeline,
    role_owner_notes,
    verification_pending,
)

PAGE_SIZE = 25
# Poll quickly while a worker is at it, slowly while a request waits for approval.
POLL_ACTIVE_MS = 1000
POLL_WAITING_MS = 3000


# --- list ----------------------------------------------------------------------------------------


@portal_view
@require_GET
def request_list(request: HttpRequest) -> HttpResponse:
    identity_requests = apply_filters(
        RequestListFilter, request.GET, identity_requests_visible_to(request.user)
    )
    status = request.GET.get("status", "")
    query = request.GET.get("q", "").strip()
    page_obj = Paginator(identity_requests, PAGE_SIZE).get_page(request.GET.get("page"))
    return page(
        request,
        "requests/list.html",
        {
            "page_obj": page_obj,
            "status": status,
            "query": query,
            "statuses": RequestStatus.choices,
            "filter_query": query_without_page(request),
        },
        section="requests",
    )


# --- detail --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Manifest:
    kind: str
    title: str
    yaml: str
    filename: str


@dataclasses.dataclass(frozen=True)
class Handover:
    spec: HandoverSpec
    manifests: list[Manifest]
    bundle_filename: str
    document: Any
    next_steps: NextSteps


MANIFEST_TITLES = {
    "serviceaccount": "ServiceAccount",
    "deployment": "Deployment",
    "job": "Job",
    "cronjob": "CronJob",
}


def _handover_spec(request: HttpRequest, identity_request: IdentityRequest) -> HandoverSpec:
    """The hand-over spec with this page's URL in the manifests' header comment."""
    spec = handover_spec_for(identity_request)
    url = request.build_absolute_uri(reverse("request_detail", args=[identity_request.pk]))
    return dataclasses.replace(spec, portal_url=url)


def _handover(request: HttpRequest, identity_request: IdentityRequest) -> Handover | str | None:
    """The hand-over of a ready request; a message when it cannot be built; None before ready."""
    if identity_request.status != RequestStatus.READY or identity_gone(identity_request.identity):
        return None
    try:
        spec = _handover_spec(request, identity_request)
    except ConflictError:
        return None
    except InvalidHandoverSpec as error:
        return f"The hand-over cannot be built: {error}"
    stem = f"{spec.namespace}-{spec.service_account}"
    return Handover(
        spec=spec,
        manifests=[
            Manifest(
                kind, MANIFEST_TITLES.get(kind, kind), render_one(spec, kind), f"{stem}-{kind}.yaml"
            )
            for kind in MANIFEST_KINDS
        ],
        bundle_filename=f"{stem}.yaml",
        document=handover_document(spec),
        next_steps=next_steps(spec),
    )


def _detail_context(request: HttpRequest, identity_request: IdentityRequest) -> dict[str, Any]:

    user = request.user
    events = list(
        audit_events_visible_to(user, AuditEventFilters(identity_request_id=identity_request.pk))
    )
    verifications = list(request_verifications(identity_request)[:10])
    latest = verifications[0] if verifications else None
    verifying = verification_pending(identity_request, latest, events)
    status = identity_request.status
    poll_ms = 0
    if status in REQUEST_STATUSES_IN_FLIGHT or verifying:
        poll_ms = POLL_ACTIVE_MS
    elif status == RequestStatus.PENDING:
        poll_ms = POLL_WAITING_MS
    handover = _handover(request, identity_request)
    decision = approval_item(user, identity_request)
    return {
        "identity_request": identity_request,
        "events": events,
        "audit_rows": audit_rows(events),
        "timeline": request_timeline(identity_request, events),
        "progress": provisioning_progress(request_steps(identity_request)),
        "actions": request_actions(user, identity_request),
        "verifications": verifications,
        "latest_verification": latest,
        "verifying": verifying,
        "handover": handover if isinstance(handover, Handover) else None,
        "handover_problem": handover if isinstance(handover, str) else "",
        "poll_ms": poll_ms,
        "decision_form": DecisionForm(),
        "decommission_form": DecommissionForm(),
        "approvals": list(identity_request.approvals.all()),
        "roles_with_owners": role_owner_notes(
            identity_request, decision.scopes if decision is not None else None
        ),
        "identity_gone": identity_gone(identity_request.identity),
        "cluster_cleanup": cluster_cleanup(
            identity_request.identity, _released_service_accounts(user, identity_request)
        ),
        # The queue's approve/reject form, when the viewer has a decision to make here.
        "decision": decision,
        "change_diff": change_lines(identity_request)
        if identity_request.kind == RequestKind.CHANGE_ROLES
        else [],
        "revisions": request_revisions(identity_request),
        "edit": _edit_forms(user, identity_request),
    }


def _released_service_accounts(user: Any, identity_request: IdentityRequest) -> list[AuditEvent]:
    """The portal's removals of client-id annotations for this request's identity, if deleted."""
    identity = identity_request.identity
    if identity is None or not identity_gone(identity):
        return []
    return list(
        audit_events_visible_to(
            user,
            AuditEventFilters(
                identity_id=identity.pk, action=AuditAction.KUBE_SERVICE_ACCOUNT_RELEASED
            ),
        )
    )


EDITS_ROLES = (RequestKind.NEW, RequestKind.CHANGE_ROLES)


def _edit_forms(user: Any, identity_request: IdentityRequest) -> dict[str, Any] | None:
    """The requester's edit form of a request sent back to them, prefilled: the justification
    and, for a new identity or a change, its roles (a change's as they will be after it)."""
    if identity_request.status != RequestStatus.SENT_BACK or (
        identity_request.requester_id != user.pk
    ):
        return None
    rows = list(identity_request.roles.all())
    roles = [
        {"role": row.role.name, "scope": row.scope}
        for row in rows
        if row.change in (RoleChange.NONE, RoleChange.ADD, RoleChange.KEEP)
    ]
    return {
        "form": ResubmitForm(
            initial={
                "justification": identity_request.justification,
                "is_exception": identity_request.is_exception,
            }
        ),
        "role_forms": ChangeRoleFormSet(
            prefix="roles", form_kwargs={"catalog": list(catalog_roles())}, initial=roles
        )
        if identity_request.kind in EDITS_ROLES
        else None,
    }


@portal_view
@require_POST
def request_resubmit(request: HttpRequest, pk: int) -> HttpResponse:
    """Save the requester's edits of a sent-back request and resubmit it as its next revision."""
    user = signed_in_user(request)
    identity_request = identity_request_get(user=user, pk=pk)
    form = ResubmitForm(request.POST)
    role_forms = ChangeRoleFormSet(
        request.POST, prefix="roles", form_kwargs={"catalog": list(catalog_roles())}
    )
    edits_roles = identity_request.kind in EDITS_ROLES
    if not form.is_valid() or (edits_roles and not role_forms.is_valid()):
        messages.error(
            request, "Say what you changed (justification); each role row needs a role and a scope."
        )
        return redirect("request_detail", pk=pk)
    wanted = (
        [
            RoleDraft(
                role=str(role_form.cleaned_data.get("role") or ""),
                scope=str(role_form.cleaned_data.get("scope") or "").strip(),
            )
            for role_form in role_forms.forms
            if not role_form.is_blank
        ]
        if edits_roles
        else []
    )
    edits: dict[str, Any] = {}
    if identity_request.kind == RequestKind.NEW:
        edits["roles_asked"] = wanted
    elif identity_request.kind == RequestKind.CHANGE_ROLES and identity_request.identity:
        edits["add"], edits["remove"] = role_change_from_wanted(identity_request.identity, wanted)

    def save_and_resubmit() -> None:
        identity_request_revise(
            identity_request=identity_request,
            actor=user,
            justification=form.cleaned_data["justification"],
            is_exception=form.cleaned_data["is_exception"],
            **edits,
        )
        identity_request_resubmit(identity_request=identity_request, actor=user)

    return action_outcome(
        request,
        save_and_resubmit,
        done=f"Request #{pk} resubmitted as revision {identity_request.revision + 1}; the "
        "approvers decide on it afresh.",
        fallback=reverse("request_detail", args=[pk]),
    )


LIVE_REGIONS = {
    "request-status": "requests/_status.html",
    "request-progress": "requests/_progress.html",
    "request-result": "requests/_result.html",
    "request-asked": "requests/_asked.html",
    "request-audit": "requests/_audit.html",
}


@portal_view
@require_GET
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    identity_request = identity_request_get(user=signed_in_user(request), pk=pk)
    return page(
        request,
        "requests/detail.html",
        _detail_context(request, identity_request),
        section="requests",
    )


@portal_view
@require_GET
def request_progress(request: HttpRequest, pk: int) -> JsonResponse:
    """What the detail page polls: status, progress, and its live regions re-rendered."""
    identity_request = identity_request_get(user=signed_in_user(request), pk=pk)
    context = {"nav": portal_nav(request.user), **_detail_context(request, identity_request)}
    progress = context["progress"]
    return JsonResponse(
        {
            "status": identity_request.status,
            "status_label": identity_request.shown_status_label,
            "summary": f"Status {identity_request.shown_status_label}. {progress.summary}",
            "steps": [dataclasses.asdict(step) for step in progress.steps],
            "verifying": context["verifying"],
            "poll_ms": context["poll_ms"],
            "html": {
                region: render_to_string(template, context, request=request)
                for region, template in LIVE_REGIONS.items()
            },
        }
    )


# --- actions -------------------------------------------------------------------------------------


@portal_view
@require_POST
def request_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    identity_request = identity_request_get(user=signed_in_user(request), pk=pk)
    return action_outcome(
        request,
        lambda: identity_request_cancel(
            identity_request=identity_request, actor=signed_in_user(request)
        ),
        done=f"Request #{pk} cancelled.",
        fallback=reverse("request_detail", args=[pk]),
    )


@portal_view
@require_POST
def request_retry(request: HttpRequest, pk: int) -> HttpResponse:
    identity_request = identity_request_get(user=signed_in_user(request), pk=pk)
    return action_outcome(
        request,
        lambda: identity_request_retry(
            identity_request=identity_request, actor=signed_in_user(request)
        ),
        done=f"Request #{pk} sent back to provisioning; nothing is created twice.",
        fallback=reverse("request_detail", args=[pk]),
    )


@portal_view
@require_POST
def request_verify(request: HttpRequest, pk: int) -> HttpResponse:

    identity_request = identity_request_get(user=signed_in_user(request), pk=pk)
    return action_outcome(
        request,
        lambda: verification_enqueue(
            identity_request=identity_request, actor=signed_in_user(request)
        ),
        done="Verification started: the portal asks the cluster for a ServiceAccount token and "
        "exchanges it at Entra ID.",
        fallback=reverse("request_detail", args=[pk]),
    )


@portal_view
@require_GET
def request_manifests(request: HttpRequest, pk: int) -> HttpResponse:
    """The YAML as a download: `?kind=deployment` for one manifest, else the default bundle."""
    identity_request = identity_request_get(user=signed_in_user(request), pk=pk)
    try:
        spec = _handover_spec(request, identity_request)
    except ConflictError as error:
        return HttpResponse(error.message, status=409, content_type="text/plain")
    kind = request.GET.get("kind", "")
    stem = f"{spec.namespace}-{spec.service_account}"
    try:
        if kind:
            body, filename = render_one(spec, kind), f"{stem}-{kind.lower()}.yaml"
        else:
            body, filename = render_bundle(spec, DEFAULT_BUNDLE_KINDS), f"{stem}.yaml"
    except InvalidHandoverSpec as error:
        return HttpResponse(str(error), status=400, content_type="text/plain")
    response = HttpResponse(body, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
