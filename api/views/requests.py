"""Identity requests: file, list, read, cancel, approve, reject and retry them; read their audit
trail and provisioning progress. What a ready request hands over is in `handover`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples
from api.conditional import if_none_match, preferred_wait
from api.filtering import QueryFilterBackend
from api.idempotency import idempotent
from api.pagination import ApiCursorPagination
from api.problems import policy_violation_problem
from api.schema import POLICY_VIOLATION_EXAMPLE
from api.serializers import AuditEventOutput, IdentityRequestOutput
from api.views.base import ApiView
from identities.audit.selectors import AuditEventFilters, audit_events_visible_to
from identities.errors import PolicyViolationError
from identities.models import AuditEvent, RequestKind, RequestStatus
from identities.policy import RequestDraft, RoleDraft
from identities.selectors import (
    RequestState,
    WorkloadMatch,
    identities_visible_to,
    identity_request_get,
    identity_request_wait,
    identity_requests_visible_to,
    state_of,
    workload_match,
)
from identities.selectors.filters import IdentityRequestFilter
from identities.selectors.waiting import wait_slot
from identities.services import (
    identity_request_approve,
    identity_request_cancel,
    identity_request_create,
    identity_request_reject,
    identity_request_resubmit,
    identity_request_retry,
    identity_request_revise,
    identity_request_send_back,
)
from provisioning.models import StepStatus
from provisioning.selectors import request_steps

TAG = "identity requests"


def detail_url(request: Request, pk: int) -> str:
    return request.build_absolute_uri(reverse("api:identity-request-detail", args=[pk]))


def fresh(request: Request, pk: int) -> dict[str, Any]:
    """The request as its reader sees it now (after an action changed it)."""
    return IdentityRequestOutput(identity_request_get(user=request.user, pk=pk)).data


def workload_links(request: Request, match: WorkloadMatch) -> dict[str, Any]:
    """Where a pipeline goes next for the request that stands for a workload."""
    pk = match.identity_request.pk
    identity = match.identity
    return {
        "identity_request": detail_url(request, pk),
        "manifests": request.build_absolute_uri(
            reverse("api:identity-request-manifests", args=[pk])
        ),
        "identity": None
        if identity is None
        else request.build_absolute_uri(reverse("api:identity-detail", args=[identity.pk])),
    }


def _refusal_naming_existing(
    request: Request, exc: PolicyViolationError, draft: RequestDraft
) -> Response | None:
    """An already_federated refusal names the identity or request the caller can see for the
    ServiceAccount (ids and URLs under `existing`), so a re-run can find it; None otherwise."""
    if not any(v.rule == "already_federated" for v in exc.violations):
        return None
    match = workload_match(
        user=request.user,
        cluster=draft.cluster,
        namespace=draft.namespace,
        service_account=draft.service_account,
    )
    if match is None:
        return None
    existing = {
        "outcome": match.outcome.value,
        "identity_request_id": match.identity_request.pk,
        "identity_id": match.identity.pk if match.identity else None,
        "links": workload_links(request, match),
    }
    return policy_violation_problem(exc, instance=request.path, extra={"existing": existing})


class RoleInput(serializers.Serializer):
    role = serializers.CharField(max_length=128, help_text="Catalog role name or role GUID.")
    scope = serializers.CharField(max_length=1024, help_text="ARM resource id.")
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Time-bound access: the role is removed at this time (ISO 8601). Required "
        "for privileged roles, at most ACCESS_MAX_DAYS_PRIVILEGED (default 30) days away; "
        "other roles at most ACCESS_MAX_DAYS days (0 = unlimited, no end date needed).",
    )


class IdentityRequestCollectionView(ApiView):
    """GET lists the requests you may see; POST files a new one."""

    filter_backends = [QueryFilterBackend, OrderingFilter]
    filterset_class = IdentityRequestFilter
    ordering_fields = ["id", "created_at"]
    ordering = ["-id"]
    write_scope = "request"

    class Input(serializers.Serializer):
        kind = serializers.ChoiceField(
            choices=[RequestKind.NEW, RequestKind.ADD_SERVICE_ACCOUNT],
            default=RequestKind.NEW,
            help_text="new: a new identity; add_service_account: federate another "
            "ServiceAccount with an existing identity (give `identity`).",
        )
        app_name = serializers.CharField(max_length=63, required=False, default="")
        team = serializers.CharField(max_length=63, required=False, default="")
        cluster = serializers.CharField(max_length=63)
        namespace = serializers.CharField(max_length=63)
        service_account = serializers.CharField(max_length=253)
        roles = serializers.ListField(
            child=RoleInput(), required=False, default=list, max_length=50
        )
        tags = serializers.DictField(
            child=serializers.CharField(max_length=256, allow_blank=True),
            required=False,
            default=dict,
        )
        justification = serializers.CharField(max_length=4000)
        is_exception = serializers.BooleanField(
            default=False,
            help_text="Ask for something policy refuses by default (privileged role, broad "
            "scope); needs two approvers and a justification of 20+ characters.",
        )
        identity = serializers.IntegerField(
            required=False, allow_null=True, default=None, help_text="For add_service_account."
        )
        identity_expires_at = serializers.DateTimeField(
            required=False,
            allow_null=True,
            default=None,
            help_text="new: decommission the identity at this time (ISO 8601), at most "
            "ACCESS_MAX_DAYS days away when that is set.",
        )

        def to_internal_value(self, data: Any) -> Any:
            # A new identity needs its team and app name: said together with any other missing
            # field, not in a second round by the policy (add_service_account takes them from
            # the identity, so the fields themselves are optional).
            missing: dict[str, list[serializers.ErrorDetail]] = {}
            if isinstance(data, Mapping) and data.get("kind", RequestKind.NEW) == RequestKind.NEW:
                missing = {
                    field: [serializers.ErrorDetail("This field is required.", code="required")]
                    for field in ("team", "app_name")
                    if not data.get(field)
                }
            try:
                value = super().to_internal_value(data)
            except serializers.ValidationError as error:
                if missing and isinstance(error.detail, dict):
                    raise serializers.ValidationError({**missing, **error.detail}) from None
                raise
            if missing:
                raise serializers.ValidationError(missing)
            return value

        def validate_identity(self, value: int | None) -> int | None:
            # Another team's identity is as unknown as a missing one (no existence leak).
            user = self.context["user"]
            if value is not None and not identities_visible_to(user).filter(pk=value).exists():
                raise serializers.ValidationError(
                    f"Identity #{value} is unknown.", code="unknown_identity"
                )
            return value

        def draft(self) -> RequestDraft:
            values = self.validated_data
            return RequestDraft(
                kind=values["kind"],
                team=values["team"],
                cluster=values["cluster"],
                namespace=values["namespace"],
                service_account=values["service_account"],
                app_name=values["app_name"],
                roles=tuple(
                    RoleDraft(role=r["role"], scope=r["scope"], expires_at=r["expires_at"])
                    for r in values["roles"]
                ),
                tags=values["tags"],
                justification=values["justification"],
                is_exception=values["is_exception"],
                identity_id=values["identity"],
                identity_expires_at=values["identity_expires_at"],
            )

    def get_queryset(self) -> Any:
        return identity_requests_visible_to(self.request.user)

    @extend_schema(
        tags=[TAG],
        summary="List identity requests",
        description="Your teams' requests (approvers, auditors and admins: all), newest first.",
        responses=IdentityRequestOutput(many=True),
        examples=[examples.REQUEST_LIST],
    )
    def get(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), IdentityRequestOutput)

    @extend_schema(
        tags=[TAG],
        summary="File an identity request",
        description="Checked against the policy at once: every violated field is named in "
        "the 400 problem. Filed requests are `pending` until approved.",
        request=Input,
        responses={201: IdentityRequestOutput},
        examples=[
            examples.REQUEST_CREATE_INPUT,
            examples.REQUEST_PENDING,
            POLICY_VIOLATION_EXAMPLE,
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data, context={"user": self.actor()})
        data.is_valid(raise_exception=True)
        draft = data.draft()
        try:
            identity_request = identity_request_create(requester=self.actor(), draft=draft)
        except PolicyViolationError as exc:
            refusal = _refusal_naming_existing(request, exc, draft)
            if refusal is None:
                raise
            return refusal
        return Response(
            fresh(request, identity_request.pk),
            status=status.HTTP_201_CREATED,
            headers={"Location": detail_url(request, identity_request.pk)},
        )


class SinceInput(serializers.Serializer):
    since = serializers.ChoiceField(
        choices=RequestStatus.choices,
        required=False,
        help_text="With `Prefer: wait`: answer as soon as the status is no longer this one.",
    )


class IdentityRequestDetailView(ApiView):
    write_scope = "request"

    class EditInput(serializers.Serializer):
        """The fields to change; those left out stay as they are."""

        justification = serializers.CharField(max_length=4000, required=False)
        is_exception = serializers.BooleanField(required=False)
        roles = serializers.ListField(
            child=RoleInput(), required=False, max_length=50, help_text="kind=new: its roles."
        )
        tags = serializers.DictField(
            child=serializers.CharField(max_length=256, allow_blank=True),
            required=False,
            help_text="kind=new: its tags.",
        )
        add = serializers.ListField(
            child=RoleInput(), required=False, max_length=50, help_text="change_roles: to add."
        )
        remove = serializers.ListField(
            child=RoleInput(),
            required=False,
            max_length=50,
            help_text="change_roles: to remove.",
        )

    def _edit(self, request: Request, pk: int) -> Response:
        data = self.EditInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data

        def drafts(name: str) -> list[RoleDraft] | None:
            if name not in values:
                return None
            return [RoleDraft(role=r["role"], scope=r["scope"]) for r in values[name]]

        identity_request = identity_request_get(user=self.actor(), pk=pk)
        identity_request_revise(
            identity_request=identity_request,
            actor=self.actor(),
            justification=values.get("justification"),
            is_exception=values.get("is_exception"),
            roles_asked=drafts("roles"),
            tags=values.get("tags"),
            add=drafts("add"),
            remove=drafts("remove"),
        )
        return Response(fresh(request, pk))

    @extend_schema(
        tags=[TAG],
        summary="Edit a request sent back to you",
        description="Its requester only, while `sent_back`. PUT and PATCH alike: the fields "
        "given replace those of the request, the others stay. The policy judges the edited "
        "request (a violation is a 400 naming the field and rule; nothing is saved). Resubmit "
        "it to have it approved as its next revision.",
        request=EditInput,
        responses={200: IdentityRequestOutput},
        examples=[examples.EDIT_INPUT, examples.REQUEST_EDITED],
    )
    @idempotent
    def put(self, request: Request, pk: int) -> Response:
        return self._edit(request, pk)

    @extend_schema(
        tags=[TAG],
        summary="Edit part of a request sent back to you",
        description="As PUT: the fields given replace those of the request.",
        request=EditInput,
        responses={200: IdentityRequestOutput},
        examples=[examples.EDIT_INPUT, examples.REQUEST_EDITED],
    )
    @idempotent
    def patch(self, request: Request, pk: int) -> Response:
        return self._edit(request, pk)

    @extend_schema(
        tags=[TAG],
        summary="Read an identity request (optionally waiting for it to change)",
        description="Poll this until `status` is `ready` (then `identity` carries client_id, "
        "principal_id, tenant_id and resource_id) or `failed`/`rejected`/`cancelled`. Every "
        "answer carries an `ETag` for the request's status and decisions. Long-poll instead of "
        "polling: send `Prefer: wait=N` (at most API_WAIT_MAX_SECONDS, default 60) with "
        "`If-None-Match: <ETag>` or `?since=<status>`, and the answer comes as soon as the "
        "request changed, or after N seconds: then 304 (If-None-Match) or 200 with the "
        "unchanged request (since). `Preference-Applied: wait=N` names the wait used; "
        "without it the wait was not honoured (too many of your or the server's calls were "
        "already waiting) and the answer came at once: ask again. "
        "If-None-Match without Prefer is an ordinary conditional GET (304 when unchanged).",
        parameters=[
            SinceInput,
            OpenApiParameter(
                "Prefer",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="`wait=N`: wait up to N seconds for a change (RFC 7240).",
            ),
            OpenApiParameter(
                "If-None-Match",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="The ETag you saw: 304 while the request is still at it.",
            ),
        ],
        responses={
            200: IdentityRequestOutput,
            304: OpenApiResponse(description="Not modified: still at the If-None-Match ETag."),
        },
        examples=[examples.REQUEST_READY, examples.REQUEST_DECOMMISSIONED],
    )
    def get(self, request: Request, pk: int) -> Response:
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        since_input = SinceInput(data=request.query_params)
        since_input.is_valid(raise_exception=True)
        since = since_input.validated_data.get("since")
        etags = if_none_match(request)
        wait = preferred_wait(request)

        def unchanged(revision: RequestState) -> bool:
            if etags and not ({"*", revision.etag.removeprefix("W/")} & etags):
                return False
            return since is None or revision.status == since

        headers: dict[str, str] = {}
        if wait is not None and (etags or since is not None):
            applied = True  # a request that has already changed is answered at once anyway
            if unchanged(state_of(identity_request)):
                # Over the caps on concurrent waits: answered at once, the preference ignored.
                with wait_slot(waiter=self.actor().pk, timeout=wait) as applied:
                    if applied:
                        identity_request_wait(pk=pk, unchanged=unchanged, timeout=wait)
                        identity_request = identity_request_get(user=self.actor(), pk=pk)
            if applied:
                headers["Preference-Applied"] = f"wait={wait}"
        revision = state_of(identity_request)
        headers["ETag"] = revision.etag
        if etags and unchanged(revision):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(IdentityRequestOutput(identity_request).data, headers=headers)


class IdentityRequestCancelView(ApiView):
    write_scope = "request"

    @extend_schema(
        tags=[TAG],
        summary="Cancel a pending, sent-back or failed-change request",
        description="A pending or sent-back request: its requester or a member of its team. A "
        "failed change of roles (kind=change_roles): its team, approvers or admins; the roles "
        "Azure confirmed stay as they are, the rest of the change is dropped (a role not yet "
        "added is not added, a role not yet removed stays), the audit row lists both, and a "
        "drift check of the identity follows. Any other status, or another failed kind, is 409.",
        request=None,
        responses={200: IdentityRequestOutput},
        examples=[examples.REQUEST_CANCELLED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        identity_request_cancel(identity_request=identity_request, actor=self.actor())
        return Response(fresh(request, pk))


class IdentityRequestApproveView(ApiView):
    write_scope = "approve"

    class Input(serializers.Serializer):
        comment = serializers.CharField(
            max_length=4000, required=False, allow_blank=True, default=""
        )
        revision = serializers.IntegerField(
            required=False,
            min_value=1,
            default=None,
            help_text="The revision you reviewed (the request's `revision`): if the request was "
            "sent back and changed since, the approval is refused with 409.",
        )

    @extend_schema(
        tags=[TAG],
        summary="Approve a pending request",
        description="Approvers only, never their own request. The policy is checked again. An "
        "exception needs two different approvers: the first approval leaves it pending. Once "
        "approved, provisioning starts. Send the `revision` you reviewed: a request sent back "
        "and changed since is refused (409).",
        request=Input,
        responses={200: IdentityRequestOutput},
        examples=[examples.APPROVE_INPUT, examples.REQUEST_APPROVED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        identity_request_approve(
            identity_request=identity_request,
            approver=self.actor(),
            comment=data.validated_data["comment"],
            revision=data.validated_data["revision"],
        )
        return Response(fresh(request, pk))


class IdentityRequestRejectView(ApiView):
    write_scope = "approve"

    class Input(serializers.Serializer):
        comment = serializers.CharField(max_length=4000, help_text="Tells the requester why.")

    @extend_schema(
        tags=[TAG],
        summary="Reject a pending request",
        description="Approvers only, never their own request; the comment is required.",
        request=Input,
        responses={200: IdentityRequestOutput},
        examples=[examples.REJECT_INPUT, examples.REQUEST_REJECTED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        identity_request_reject(
            identity_request=identity_request,
            approver=self.actor(),
            comment=data.validated_data["comment"],
        )
        return Response(fresh(request, pk))


class IdentityRequestSendBackView(ApiView):
    write_scope = "approve"

    class Input(serializers.Serializer):
        comment = serializers.CharField(
            max_length=4000, help_text="What the requester should change."
        )

    @extend_schema(
        tags=[TAG],
        summary="Send a pending request back for changes",
        description="Instead of rejecting it: approvers (or a member of a team that owns one "
        "of its scopes), never its requester; the comment is required. The request becomes "
        "`sent_back`; its requester edits it (PUT/PATCH) and resubmits it.",
        request=Input,
        responses={200: IdentityRequestOutput},
        examples=[examples.SEND_BACK_INPUT, examples.REQUEST_SENT_BACK],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        identity_request_send_back(
            identity_request=identity_request,
            approver=self.actor(),
            comment=data.validated_data["comment"],
        )
        return Response(fresh(request, pk))


class IdentityRequestResubmitView(ApiView):
    write_scope = "request"

    @extend_schema(
        tags=[TAG],
        summary="Resubmit a request sent back to you",
        description="Its requester only: the request is `pending` again as its next revision, "
        "with its approvals reset; `revisions` keeps every earlier one, its comment and what "
        "the next revision changed.",
        request=None,
        responses={200: IdentityRequestOutput},
        examples=[examples.REQUEST_RESUBMITTED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        identity_request_resubmit(identity_request=identity_request, actor=self.actor())
        return Response(fresh(request, pk))


class IdentityRequestRetryView(ApiView):
    write_scope = "request"

    @extend_schema(
        tags=[TAG],
        summary="Retry a failed request",
        description="Back to provisioning; the reconcile is idempotent, so nothing is created "
        "twice. Its team, approvers and admins may retry.",
        request=None,
        responses={200: IdentityRequestOutput},
        examples=[examples.REQUEST_PROVISIONING],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        identity_request_retry(identity_request=identity_request, actor=self.actor())
        return Response(fresh(request, pk))


class IdentityRequestAuditView(ApiView):
    class ChainOrder(ApiCursorPagination):
        ordering = "id"

    pagination_class = ChainOrder

    @extend_schema(
        tags=[TAG],
        summary="The request's audit trail",
        description="Every recorded action on the request, oldest first (chain order).",
        responses=AuditEventOutput(many=True),
        examples=[examples.AUDIT_PAGE],
    )
    def get(self, request: Request, pk: int) -> Response:
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        events = audit_events_visible_to(
            request.user, AuditEventFilters(identity_request_id=identity_request.pk)
        )
        return self.paginated(events, AuditEventOutput)

    def get_queryset(self) -> Any:  # for the schema generator's model introspection only
        return AuditEvent.objects.none()


class StepOutput(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment] # a field, not Field.label
    position = serializers.IntegerField()
    status = serializers.ChoiceField(choices=StepStatus.choices)
    attempts = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    azure_request_id = serializers.CharField(help_text="x-ms-request-id of the last Azure call.")
    error = serializers.CharField()


class IdentityRequestStepsView(ApiView):
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="Provisioning progress",
        description="The request's provisioning steps in plan order, with status, attempts, "
        "timing and Azure request ids. Empty until a worker picks the request up.",
        responses=StepOutput(many=True),
        examples=[examples.STEPS],
    )
    def get(self, request: Request, pk: int) -> Response:
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        return Response(StepOutput(request_steps(identity_request), many=True).data)
