"""Identities: the inventory (drift state, federated credential usage n/20), role changes,
decommission and repair."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples
from api.filtering import QueryFilterBackend
from api.idempotency import idempotent
from api.serializers import IdentityOutput, IdentityRequestOutput
from api.views.base import ApiView
from identities.policy import RoleDraft
from identities.selectors import identities_visible_to, identity_get, identity_request_get
from identities.selectors.filters import IdentityFilter
from identities.services import (
    identity_request_change_create,
    identity_request_decommission_create,
)
from provisioning.services import identity_repair_enqueue

TAG = "identities"


class IdentityListView(ApiView):
    filter_backends = [QueryFilterBackend, OrderingFilter]
    filterset_class = IdentityFilter
    ordering_fields = ["id", "name", "created_at"]
    ordering = ["-id"]

    def get_queryset(self) -> Any:
        return identities_visible_to(self.request.user)

    @extend_schema(
        tags=[TAG],
        summary="List identities",
        description="Your teams' managed identities (approvers, auditors, admins: all) with "
        "their drift state, federated credentials (`fic_usage`: n of Azure's 20) and role "
        "assignments.",
        responses=IdentityOutput(many=True),
        examples=[examples.IDENTITY_LIST],
    )
    def get(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), IdentityOutput)


class IdentityDetailView(ApiView):
    @extend_schema(
        tags=[TAG],
        summary="Read an identity",
        responses=IdentityOutput,
        examples=[examples.IDENTITY],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(IdentityOutput(identity_get(user=self.actor(), pk=pk)).data)


class IdentityDecommissionView(ApiView):
    write_scope = "request"

    class Input(serializers.Serializer):
        justification = serializers.CharField(max_length=4000)

    @extend_schema(
        tags=[TAG],
        summary="Request decommissioning",
        description="Files a decommission request (role assignments, then federated "
        "credentials, then the identity are removed once it is approved). Members of the "
        "identity's team may.",
        request=Input,
        responses={201: IdentityRequestOutput},
        examples=[examples.DECOMMISSION_INPUT, examples.REQUEST_DECOMMISSION],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        identity = identity_get(user=self.actor(), pk=pk)
        identity_request = identity_request_decommission_create(
            requester=self.actor(),
            identity=identity,
            justification=data.validated_data["justification"],
        )
        body = IdentityRequestOutput(
            identity_request_get(user=self.actor(), pk=identity_request.pk)
        )
        url = reverse("api:identity-request-detail", args=[identity_request.pk])
        return Response(
            body.data,
            status=status.HTTP_201_CREATED,
            headers={"Location": request.build_absolute_uri(url)},
        )


class ChangeRoleInput(serializers.Serializer):
    role = serializers.CharField(max_length=128, help_text="Catalog role name or role GUID.")
    scope = serializers.CharField(max_length=1024, help_text="ARM resource id.")
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="`add` only: the role's end (ISO 8601), bounded as in a new request.",
    )


class IdentityChangeView(ApiView):
    write_scope = "request"

    class Input(serializers.Serializer):
        add = serializers.ListField(
            child=ChangeRoleInput(),
            required=False,
            default=list,
            max_length=50,
            help_text="Roles to grant, judged like a new request's.",
        )
        remove = serializers.ListField(
            child=ChangeRoleInput(),
            required=False,
            default=list,
            max_length=50,
            help_text="Roles the identity holds, to take away. A scope change is one of each.",
        )
        renew = serializers.ListField(
            child=ChangeRoleInput(),
            required=False,
            default=list,
            max_length=50,
            help_text="Roles the identity holds, kept with a new `expires_at` (a renewal of "
            "time-bound access; null = no end where policy allows). No Azure write.",
        )
        justification = serializers.CharField(max_length=4000)
        is_exception = serializers.BooleanField(
            default=False,
            help_text="Needed when the identity would hold a privileged role or a broad scope "
            "after gaining a role; two approvers.",
        )

    @extend_schema(
        tags=[TAG],
        summary="Request a change of roles",
        description="Files a `change_roles` request on a ready identity: roles to add and to "
        "remove. The policy judges the identity as it will be after the change; the request "
        "carries its `diff` (added / removed / unchanged). Once approved, only the delta is "
        "written to Azure; the identity and its client id stay. One open change per identity: "
        "a second is refused, naming the first. Members of the identity's team may.",
        request=Input,
        responses={201: IdentityRequestOutput},
        examples=[examples.CHANGE_INPUT, examples.REQUEST_CHANGE],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        identity = identity_get(user=self.actor(), pk=pk)
        identity_request = identity_request_change_create(
            requester=self.actor(),
            identity=identity,
            add=[
                RoleDraft(role=r["role"], scope=r["scope"], expires_at=r["expires_at"])
                for r in values["add"]
            ],
            remove=[RoleDraft(role=r["role"], scope=r["scope"]) for r in values["remove"]],
            renew=[
                RoleDraft(role=r["role"], scope=r["scope"], expires_at=r["expires_at"])
                for r in values["renew"]
            ],
            justification=values["justification"],
            is_exception=values["is_exception"],
        )
        body = IdentityRequestOutput(
            identity_request_get(user=self.actor(), pk=identity_request.pk)
        )
        url = reverse("api:identity-request-detail", args=[identity_request.pk])
        return Response(
            body.data,
            status=status.HTTP_201_CREATED,
            headers={"Location": request.build_absolute_uri(url)},
        )


class RepairOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["queued"])


class IdentityRepairView(ApiView):
    write_scope = "request"

    @extend_schema(
        tags=[TAG],
        summary="Repair drift",
        description="Queue a reconcile that makes Azure match the portal's record again "
        "(after drift). Ready identities only; the team, approvers and admins may.",
        request=None,
        responses={202: RepairOutput},
        examples=[examples.REPAIR_QUEUED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        identity = identity_get(user=self.actor(), pk=pk)
        identity_repair_enqueue(identity=identity, actor=self.actor())
        return Response({"status": "queued"}, status=status.HTTP_202_ACCEPTED)
