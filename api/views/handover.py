"""What a ready request hands over: Kubernetes manifests (YAML or JSON), the hand-over document
(env vars, az CLI, Terraform, troubleshooting), and the token-exchange verification."""

from __future__ import annotations

import dataclasses

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples
from api.idempotency import idempotent
from api.renderers import YamlRenderer
from api.views.base import ApiView
from identities.errors import ConflictError
from identities.handover import handover_document
from identities.handover_spec import handover_spec_for
from identities.manifests import (
    DEFAULT_BUNDLE_KINDS,
    MANIFEST_KINDS,
    HandoverSpec,
    InvalidHandoverSpec,
    render_bundle,
)
from identities.models import IdentityRequest
from identities.selectors import identity_request_get
from provisioning.models import VerificationOutcome
from provisioning.selectors import request_verifications
from provisioning.services import verification_enqueue

TAG = "hand-over"


def _spec(identity_request: IdentityRequest, *, image: str = "") -> HandoverSpec:
    """The request's hand-over spec: a conflict until it is ready; a bad `image` is a 400."""
    try:
        spec = handover_spec_for(identity_request)
    except InvalidHandoverSpec as exc:
        # Recorded state that cannot make valid manifests (ids not stored yet) is not ready.
        raise ConflictError(
            f"request {identity_request.pk} cannot be handed over yet: {exc}"
        ) from exc
    if not image:
        return spec
    try:
        return dataclasses.replace(spec, image=image)
    except InvalidHandoverSpec as exc:
        raise serializers.ValidationError({"image": [str(exc)]}) from exc


class ManifestDocumentOutput(serializers.Serializer):
    kind = serializers.CharField(help_text="serviceaccount, deployment, job or cronjob.")
    manifest = serializers.DictField(help_text="The Kubernetes object.")


class ManifestsOutput(serializers.Serializer):
    identity_request = serializers.IntegerField()
    kinds = serializers.ListField(child=serializers.CharField())
    documents = ManifestDocumentOutput(many=True)
    yaml = serializers.CharField(help_text="The same documents as one YAML stream.")


class ManifestsView(ApiView):
    renderer_classes = [JSONRenderer, YamlRenderer]
    pagination_class = None

    class Query(serializers.Serializer):
        kind = serializers.MultipleChoiceField(
            choices=sorted(MANIFEST_KINDS),
            required=False,
            help_text="Repeat for several; default: serviceaccount and deployment.",
        )
        image = serializers.CharField(
            required=False,
            max_length=512,
            help_text="Container image for the workload skeletons (default: a placeholder).",
        )

    @extend_schema(
        tags=[TAG],
        summary="Kubernetes manifests",
        description="The ServiceAccount (annotated with the identity's client id) and workload "
        "skeletons labelled for the workload identity webhook. `Accept: application/yaml` or "
        "`?format=yaml` returns a multi-document YAML stream ready for `kubectl apply -f -`; "
        "JSON otherwise. 409 until the request is ready.",
        parameters=[Query],
        responses={
            (200, "application/json"): ManifestsOutput,
            (200, "application/yaml"): OpenApiResponse(OpenApiTypes.STR),
        },
        examples=[examples.MANIFESTS_JSON, examples.MANIFESTS_YAML],
    )
    def get(self, request: Request, pk: int) -> Response:
        query = self.Query(data=request.query_params)
        query.is_valid(raise_exception=True)
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        spec = _spec(identity_request, image=query.validated_data.get("image", ""))
        kinds = sorted(query.validated_data.get("kind") or DEFAULT_BUNDLE_KINDS, key=_kind_order)
        bundle = render_bundle(spec, kinds)
        if request.accepted_renderer.format == "yaml":
            return Response(bundle)
        documents = [{"kind": kind, "manifest": MANIFEST_KINDS[kind](spec)} for kind in kinds]
        return Response(
            {"identity_request": pk, "kinds": kinds, "documents": documents, "yaml": bundle}
        )


def _kind_order(kind: str) -> int:
    """ServiceAccount first: a workload applied before its ServiceAccount fails to start."""
    return list(MANIFEST_KINDS).index(kind)


class EnvVarOutput(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField()
    meaning = serializers.CharField()


class SdkMinimumOutput(serializers.Serializer):
    language = serializers.CharField()
    package = serializers.CharField()
    minimum_version = serializers.CharField()


class CliCommandOutput(serializers.Serializer):
    purpose = serializers.CharField()
    command = serializers.CharField(source="shell", help_text="Quoted for a POSIX shell.")


class TroubleshootingOutput(serializers.Serializer):
    key = serializers.CharField()
    symptom = serializers.CharField()
    cause = serializers.CharField()
    fix = serializers.CharField()


class HandoverOutput(serializers.Serializer):
    env_vars = EnvVarOutput(many=True, help_text="What the webhook injects into the pods.")
    sdk_minimums = SdkMinimumOutput(many=True)
    notes = serializers.ListField(child=serializers.CharField())
    az_cli = CliCommandOutput(many=True, help_text="The az CLI equivalent of what was created.")
    az_cli_script = serializers.CharField()
    terraform = serializers.CharField(help_text="The Terraform (azurerm) equivalent.")
    troubleshooting = TroubleshootingOutput(many=True)


class HandoverView(ApiView):
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="Hand-over document",
        description="Injected environment variables, SDK minimum versions, the az CLI and "
        "Terraform equivalents and a troubleshooting table, filled in for this identity. "
        "409 until the request is ready.",
        responses=HandoverOutput,
        examples=[examples.HANDOVER],
    )
    def get(self, request: Request, pk: int) -> Response:
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        document = handover_document(_spec(identity_request))
        return Response(HandoverOutput(document).data)


class VerifyOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["queued"])
    verifications = serializers.URLField(help_text="Where the result appears.")


class VerifyView(ApiView):
    write_scope = "request"

    @extend_schema(
        tags=[TAG],
        summary="Verify the federation",
        description="Queue a token-exchange check: the worker asks the cluster for a "
        "ServiceAccount token and exchanges it at Entra ID. The result (works, propagating, "
        "or the AADSTS code with the mismatch explained) appears under verifications. Ready "
        "requests only; the team, approvers and admins may.",
        request=None,
        responses={202: VerifyOutput},
        examples=[examples.VERIFY_QUEUED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        verification_enqueue(identity_request=identity_request, actor=self.actor())
        url = reverse("api:identity-request-verifications", args=[pk])
        return Response(
            {"status": "queued", "verifications": request.build_absolute_uri(url)},
            status=status.HTTP_202_ACCEPTED,
        )


class MismatchOutput(serializers.Serializer):
    field = serializers.CharField(help_text="issuer, subject or audience.")
    expected = serializers.CharField(allow_blank=True)
    presented = serializers.CharField(allow_blank=True)
    explanation = serializers.CharField()


class VerificationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    outcome = serializers.ChoiceField(choices=VerificationOutcome.choices)
    error_code = serializers.CharField(help_text="e.g. AADSTS70021; empty when it works.")
    summary = serializers.CharField()
    mismatches = MismatchOutput(many=True)
    token_expires_at = serializers.DateTimeField(allow_null=True)
    namespace = serializers.CharField(source="federated_credential.namespace")
    service_account = serializers.CharField(source="federated_credential.service_account")
    created_at = serializers.DateTimeField()


class VerificationsView(ApiView):
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="Verification results",
        description="The request's token-exchange checks, newest first.",
        responses=VerificationOutput(many=True),
        examples=[examples.VERIFICATIONS],
    )
    def get(self, request: Request, pk: int) -> Response:
        identity_request = identity_request_get(user=self.actor(), pk=pk)
        verifications = request_verifications(identity_request)[:50]
        return Response(VerificationOutput(verifications, many=True).data)
