"""The new-request form and its live policy check: the policy engine's findings placed on the
form's controls, and a preview of what approval would create."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib import messages
from django.forms import BoundField
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from identities.errors import PermissionDeniedError, PolicyViolationError
from identities.policy import evaluate_request
from identities.selectors import (
    catalog_roles,
    clusters_for,
    namespaces_owned_by,
    policy_context_for,
    teams_of,
)
from identities.services import identity_request_create
from web.forms import (
    ROLE_PREFIX,
    ClusterOption,
    IdentityRequestForm,
    PlacedFinding,
    RoleFormSet,
    request_draft_from_forms,
)
from web.views.common import page, portal_nav, portal_view, signed_in_user
from web.views.preview import PolicyFeedback, policy_feedback, request_preview


def _cluster_options(user: Any) -> list[ClusterOption]:
    return [
        ClusterOption(cluster=cluster, namespaces=namespaces_owned_by(user, cluster))
        for cluster in clusters_for(user)
    ]


def _request_forms(request: HttpRequest, data: Any = None) -> tuple[IdentityRequestForm, Any]:
    """The form and its role rows. Azure is not asked here: the role rows find resources
    through the type-ahead (GET /api/v1/resources/) or the resource search page, on demand."""
    catalog = list(catalog_roles())
    form = IdentityRequestForm(
        data, teams=teams_of(request.user), clusters=_cluster_options(request.user)
    )
    role_forms = RoleFormSet(data, prefix=ROLE_PREFIX, form_kwargs={"catalog": catalog})
    return form, role_forms


def _with_extra_role_row(data: Any) -> Any:
    """The POST data with one more (blank) row in the roles formset: the no-JS "Add a role"."""
    data = data.copy()
    key = f"{ROLE_PREFIX}-TOTAL_FORMS"
    try:
        total = int(data.get(key, "1"))
    except ValueError:
        total = 1
    data[key] = str(min(total + 1, 20))
    return data


@dataclasses.dataclass
class CheckOutcome:
    """The live check of a form: the policy's findings on the controls, and the preview."""

    feedback: PolicyFeedback
    preview: Any
    form_valid: bool


def _check(request: HttpRequest, form: IdentityRequestForm, role_forms: Any) -> CheckOutcome:
    valid = form.is_valid() & role_forms.is_valid()
    if not valid:
        # Form-level problems (tag lines, too many role rows) show on their fields; the policy
        # runs on what could be parsed.
        form.cleaned_data.setdefault("tags", {})
        for role_form in role_forms.forms:
            if not hasattr(role_form, "cleaned_data"):
                role_form.cleaned_data = {}
    built = request_draft_from_forms(form, role_forms)
    result = evaluate_request(built.draft, policy_context_for(built.draft))
    cluster = clusters_for(request.user).filter(name=built.draft.cluster).first()
    catalog = {role.name.lower(): role for role in catalog_roles()}
    preview = request_preview(
        built.draft, cluster=cluster, catalog=catalog, requester=signed_in_user(request)
    )
    return CheckOutcome(
        feedback=policy_feedback(result, role_rows=built.role_rows),
        preview=preview,
        form_valid=valid,
    )


@dataclasses.dataclass(frozen=True)
class FieldView:
    """A form control with the policy findings placed on it."""

    field: BoundField
    findings: list[PlacedFinding]


@dataclasses.dataclass(frozen=True)
class RoleRowView:
    form: Any
    number: int | str
    role: FieldView
    scope: FieldView
    expires_at: FieldView


def _field_view(bound: BoundField, findings: list[PlacedFinding]) -> FieldView:
    mine = [placed for placed in findings if placed.dom_id == bound.auto_id]
    if any(placed.blocking for placed in mine) or bound.errors:
        bound.field.widget.attrs["aria-invalid"] = "true"
    return FieldView(bound, mine)


def _new_request_page(
    request: HttpRequest,
    form: IdentityRequestForm,
    role_forms: Any,
    *,
    outcome: CheckOutcome | None = None,
    status: int = 200,
) -> HttpResponse:
    catalog = list(catalog_roles())
    findings = (
        [*outcome.feedback.violations, *outcome.feedback.warnings] if outcome is not None else []
    )
    role_rows = [
        RoleRowView(
            form=role_form,
            number=index + 1,
            role=_field_view(role_form["role"], findings),
            scope=_field_view(role_form["scope"], findings),
            expires_at=_field_view(role_form["expires_at"], findings),
        )
        for index, role_form in enumerate(role_forms.forms)
    ]
    empty = role_forms.empty_form
    options = _cluster_options(request.user)
    chosen = str(form.data.get("cluster", "") if form.is_bound else form.initial.get("cluster", ""))
    owned = next((o.namespaces for o in options if o.cluster.name == chosen), None)
    if owned is None:
        namespace_hint = "Choose a cluster first."
    elif owned:
        namespace_hint = f"Your team owns: {', '.join(owned)}."
    else:
        namespace_hint = "Your team owns no namespace on this cluster."
    return page(
        request,
        "requests/new.html",
        {
            "form": form,
            "fields": {name: _field_view(form[name], findings) for name in form.fields},
            "role_rows": role_rows,
            "empty_role_row": RoleRowView(
                form=empty,
                number="__number__",
                role=FieldView(empty["role"], []),
                scope=FieldView(empty["scope"], []),
                expires_at=FieldView(empty["expires_at"], []),
            ),
            "role_forms": role_forms,
            "cluster_options": options,
            "namespace_hint": namespace_hint,
            "catalog": catalog,
            "resources_url": reverse("api:resource-list"),
            "resource_search_url": reverse("resource_search"),
            "outcome": outcome,
            "feedback": outcome.feedback if outcome else None,
            "preview": outcome.preview if outcome else None,
        },
        status=status,
        section="new",
    )


def _require_requester(request: HttpRequest) -> None:
    if not portal_nav(request.user).is_requester:
        raise PermissionDeniedError(
            "Only requesters (members of an app team) can file identity requests."
        )


@portal_view
def request_new(request: HttpRequest) -> HttpResponse:
    _require_requester(request)
    if request.method != "POST":
        form, role_forms = _request_forms(request)
        return _new_request_page(request, form, role_forms)

    if "add_role" in request.POST:
        form, role_forms = _request_forms(request, _with_extra_role_row(request.POST))
        outcome = _check(request, form, role_forms)
        return _new_request_page(request, form, role_forms, outcome=outcome)
    form, role_forms = _request_forms(request, request.POST)
    outcome = _check(request, form, role_forms)
    if "check" in request.POST or not outcome.form_valid or not outcome.feedback.ok:
        status = 200 if "check" in request.POST else 400
        return _new_request_page(request, form, role_forms, outcome=outcome, status=status)
    draft = request_draft_from_forms(form, role_forms).draft
    try:
        identity_request = identity_request_create(requester=signed_in_user(request), draft=draft)
    except PolicyViolationError as error:
        # The world changed between the check and the insert (a namespace was re-assigned, the
        # name got taken): show the service's own findings.
        outcome.feedback = policy_feedback(
            error.result, role_rows=request_draft_from_forms(form, role_forms).role_rows
        )
        return _new_request_page(request, form, role_forms, outcome=outcome, status=400)
    messages.success(
        request,
        f"Request #{identity_request.pk} filed; the security team has been asked to approve it.",
    )
    return redirect("request_detail", pk=identity_request.pk)


@portal_view
@require_POST
def request_check(request: HttpRequest) -> JsonResponse:
    """The live policy check of the new-request form: findings placed on controls, and the
    preview, as HTML fragments rendered by the same templates the page uses."""
    _require_requester(request)
    form, role_forms = _request_forms(request, request.POST)
    outcome = _check(request, form, role_forms)
    context = {"feedback": outcome.feedback, "preview": outcome.preview, "outcome": outcome}
    return JsonResponse(
        {
            "ok": outcome.feedback.ok and outcome.form_valid,
            "findings": outcome.feedback.as_json(),
            "form_errors": {
                **{f"id_{name}": errors for name, errors in form.errors.items()},
                **{
                    f"id_{ROLE_PREFIX}-{index}-{name}": errors
                    for index, role_form in enumerate(role_forms.forms)
                    for name, errors in role_form.errors.items()
                },
            },
            "html": {
                "policy-feedback": render_to_string(
                    "requests/_feedback.html", context, request=request
                ),
                "request-preview": render_to_string(
                    "requests/_preview.html", context, request=request
                ),
            },
        }
    )
