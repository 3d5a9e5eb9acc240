"""The identity inventory: every identity the user may see, its FIC usage (n/20), drift state
and repair; an identity's page with its credentials, roles, history and decommissioning; the
form that changes its roles."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from identities.audit.actions import AuditAction
from identities.audit.selectors import AuditEventFilters, audit_events_visible_to
from identities.errors import (
    DomainError,
    NotFoundError,
    PermissionDeniedError,
    PolicyViolationError,
)
from identities.models import (
    REQUEST_STATUSES_OPEN,
    ChildStatus,
    DriftState,
    IdentityStatus,
    RequestKind,
)
from identities.policy import RequestDraft, RoleDraft, Violation
from identities.selectors import (
    catalog_roles,
    identities_visible_to,
    identity_get,
    identity_history,
    identity_requests_visible_to,
    is_team_member,
    role_change_from_wanted,
    role_renewals,
)
from identities.services import (
    identity_request_change_create,
    identity_request_create,
    identity_request_decommission_create,
)
from provisioning.services import identity_repair_enqueue
from web.filters import IdentityListFilter, apply_filters
from web.forms import (
    AddServiceAccountForm,
    ChangeRoleFormSet,
    ChangeRolesForm,
    DecommissionForm,
    renewed_end,
)
from web.review_forms import TransferForm
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
    identity_rows,
)

PAGE_SIZE = 50


@portal_view
@require_GET
def identity_list(request: HttpRequest) -> HttpResponse:
    identities = apply_filters(IdentityListFilter, request.GET, identities_visible_to(request.user))
    status = request.GET.get("status", "")
    drift = request.GET.get("drift", "")
    query = request.GET.get("q", "").strip()
    page_obj = Paginator(identities, PAGE_SIZE).get_page(request.GET.get("page"))
    return page(
        request,
        "identities/list.html",
        {
            "page_obj": page_obj,
            "rows": identity_rows(request.user, page_obj.object_list),
            "status": status,
            "drift": drift,
            "query": query,
            "statuses": IdentityStatus.choices,
            "drift_states": DriftState.choices,
            "filter_query": query_without_page(request),
        },
        section="identities",
    )


@portal_view
@require_GET
def identity_detail(request: HttpRequest, pk: int) -> HttpResponse:
    identity = identity_get(user=signed_in_user(request), pk=pk)
    row = identity_rows(request.user, [identity])[0]
    # Offered to the team's requesters; the services check again.
    may_file = portal_nav(request.user).is_requester and is_team_member(
        request.user, identity.team_id
    )
    requests = list(identity_requests_visible_to(request.user).filter(identity=identity))
    open_change = next(
        (
            r
            for r in requests
            if r.kind == RequestKind.CHANGE_ROLES and r.status in REQUEST_STATUSES_OPEN
        ),
        None,
    )
    return page(
        request,
        "identities/detail.html",
        {
            "identity": identity,
            "row": row,
            "requests": requests,
            "history": [
                (entry, change_lines(entry) if entry.kind == RequestKind.CHANGE_ROLES else [])
                for entry in identity_history(identity)
            ],
            "can_change_roles": may_file
            and identity.status == IdentityStatus.READY
            and open_change is None,
            "open_change": open_change,
            "time_bound": any(
                a.expires_at and a.status != ChildStatus.REMOVED
                for a in identity.role_assignments.all()
            ),
            "audit_rows": audit_rows(
                audit_events_visible_to(request.user, AuditEventFilters(identity_id=identity.pk))[
                    :100
                ]
            ),
            "can_add_service_account": may_file and identity.status == IdentityStatus.READY,
            "can_decommission": may_file
            and identity.status in {IdentityStatus.READY, IdentityStatus.FAILED},
            # Its own ids: the ServiceAccount form beside it has a justification too.
            "decommission_form": DecommissionForm(auto_id="decommission-%s"),
            "add_service_account_form": AddServiceAccountForm(),
            "identity_gone": identity_gone(identity),
            "cluster_cleanup": cluster_cleanup(
                identity,
                audit_events_visible_to(
                    request.user,
                    AuditEventFilters(
                        identity_id=identity.pk, action=AuditAction.KUBE_SERVICE_ACCOUNT_RELEASED
                    ),
                )
                if identity_gone(identity)
                else [],
            ),
            # Ownership transfer (web.views.reviews): the team's members may ask for one.
            "can_transfer": identity.status == IdentityStatus.READY
            and is_team_member(request.user, identity.team_id),
            "transfer_form": TransferForm(prefix="transfer"),
        },
        section="identities",
    )


@portal_view
@require_POST
def identity_repair(request: HttpRequest, pk: int) -> HttpResponse:

    identity = identity_get(user=signed_in_user(request), pk=pk)
    return action_outcome(
        request,
        lambda: identity_repair_enqueue(identity=identity, actor=signed_in_user(request)),
        done=f"Repair of {identity.name} queued: the worker makes Azure match what was approved.",
        fallback=reverse("identity_detail", args=[pk]),
    )


@portal_view
@require_POST
def identity_decommission(request: HttpRequest, pk: int) -> HttpResponse:
    identity = identity_get(user=signed_in_user(request), pk=pk)
    form = DecommissionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the identity is no longer needed (justification).")
        return redirect("identity_detail", pk=pk)
    try:
        identity_request = identity_request_decommission_create(
            requester=signed_in_user(request),
            identity=identity,
            justification=form.cleaned_data["justification"],
        )
    except (NotFoundError, PermissionDeniedError):
        raise
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("identity_detail", pk=pk)
    messages.success(
        request,
        f"Decommission request #{identity_request.pk} filed; once approved the worker removes "
        "the role assignments, the federated credentials, then the identity.",
    )
    return redirect("request_detail", pk=identity_request.pk)


@portal_view
@require_POST
def identity_add_service_account(request: HttpRequest, pk: int) -> HttpResponse:
    identity = identity_get(user=signed_in_user(request), pk=pk)
    form = AddServiceAccountForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Namespace, ServiceAccount and justification are all required.")
        return redirect("identity_detail", pk=pk)
    draft = RequestDraft(
        kind=RequestKind.ADD_SERVICE_ACCOUNT,
        team=identity.team.name,
        cluster=identity.cluster.name,
        namespace=form.cleaned_data["namespace"].strip(),
        service_account=form.cleaned_data["service_account"].strip(),
        justification=form.cleaned_data["justification"],
        identity_id=identity.pk,
    )
    try:
        identity_request = identity_request_create(requester=signed_in_user(request), draft=draft)
    except (NotFoundError, PermissionDeniedError):
        raise
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("identity_detail", pk=pk)
    messages.success(request, f"Request #{identity_request.pk} filed.")
    return redirect("request_detail", pk=identity_request.pk)


@portal_view
@require_http_methods(["GET", "POST"])
def identity_change(request: HttpRequest, pk: int) -> HttpResponse:
    """The identity's roles as they are, to edit: change a scope, clear a row to remove the
    role, fill a blank row to add one. Filing turns the edit into a change request (the delta)."""
    user = signed_in_user(request)
    identity = identity_get(user=user, pk=pk)
    if not (portal_nav(user).is_requester and is_team_member(user, identity.team_id)):
        raise PermissionDeniedError("Only the identity's team can change its roles.")
    catalog = list(catalog_roles())
    held = [a for a in identity.role_assignments.all() if a.status != ChildStatus.REMOVED]
    violations: list[Violation] = []
    warnings: list[Violation] = []
    errors: list[str] = []
    if request.method == "POST":
        form = ChangeRolesForm(request.POST)
        role_forms = ChangeRoleFormSet(
            request.POST, prefix="roles", form_kwargs={"catalog": catalog}
        )
        if form.is_valid() and role_forms.is_valid():
            wanted = [
                RoleDraft(
                    role=str(role_form.cleaned_data.get("role") or ""),
                    scope=str(role_form.cleaned_data.get("scope") or "").strip(),
                    expires_at=role_form.cleaned_data.get("expires_at"),
                )
                for role_form in role_forms.forms
                if not role_form.is_blank
            ]
            add, remove = role_change_from_wanted(identity, wanted)
            renew = role_renewals(identity, wanted)
            try:
                change = identity_request_change_create(
                    requester=user,
                    identity=identity,
                    add=add,
                    remove=remove,
                    renew=renew,
                    justification=form.cleaned_data["justification"],
                    is_exception=form.cleaned_data["is_exception"],
                )
            except PolicyViolationError as error:
                violations, warnings = error.result.violations, error.result.warnings
            except (NotFoundError, PermissionDeniedError):
                raise
            except DomainError as error:
                errors.append(error.message)
            else:
                messages.success(
                    request,
                    f"Change request #{change.pk} filed; once approved only the roles added and "
                    "removed are written to Azure, and the identity keeps its client id.",
                )
                return redirect("request_detail", pk=change.pk)
        else:
            errors.append("Check the marked fields: each role row needs a role and a scope.")
    else:
        # "Renew" (the identity page's button) prefills each time-bound role with the
        # longest end its policy allows from now; the team edits or files it as it is.
        renewing = request.GET.get("renew") == "1"
        form = ChangeRolesForm(
            initial={"justification": "Renewal: the app still needs this access."}
            if renewing
            else None
        )
        role_forms = ChangeRoleFormSet(
            prefix="roles",
            form_kwargs={"catalog": catalog},
            initial=[
                {
                    "role": a.role.name,
                    "scope": a.scope,
                    "expires_at": renewed_end(a) if renewing and a.expires_at else a.expires_at,
                }
                for a in held
            ],
        )
    return page(
        request,
        "identities/change.html",
        {
            "identity": identity,
            "held": held,
            "form": form,
            "role_forms": role_forms,
            "violations": violations,
            "warnings": warnings,
            "errors": errors,
        },
        section="identities",
    )
