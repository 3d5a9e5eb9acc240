"""What pipelines call besides a plain create: find-or-create by workload (`ensure`) and a dry
run of filing (`validate`). The long-poll is on the request's detail view (`requests`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples
from api.idempotency import idempotent
from api.problems import finding_entries
from api.schema import POLICY_VIOLATION_EXAMPLE
from api.serializers import IdentityRequestOutput
from api.views.base import ApiView
from api.views.requests import (
    TAG,
    IdentityRequestCollectionView,
    detail_url,
    fresh,
    workload_links,
)
from identities.manifests import DEFAULT_BUNDLE_KINDS, render_bundle
from identities.selectors import WorkloadOutcome
from identities.selectors.dry_run import PLACEHOLDER_FIELDS, identity_request_dry_run
from identities.services import identity_request_ensure


class WorkloadLinksOutput(serializers.Serializer):
    identity_request = serializers.URLField()
    manifests = serializers.URLField(help_text="Serves YAML once the request is ready.")
    identity = serializers.URLField(allow_null=True)


class EnsureOutput(IdentityRequestOutput):
    outcome = serializers.ChoiceField(
        choices=[outcome.value for outcome in WorkloadOutcome],
        help_text="identity_exists: a live identity federates the ServiceAccount (the request "
        "is the one that did, ready); request_open: a request for it is pending, approved, "
        "provisioning or failed; created: a new request was filed (201).",
    )
    links = WorkloadLinksOutput()


class IdentityRequestEnsureView(ApiView):
    """Find-or-create by workload, for pipelines that are re-run."""

    write_scope = "request"

    @extend_schema(
        tags=[TAG],
        summary="Find or file the request for a workload",
        description="Keyed by cluster + namespace + service_account. Answers 200 with the "
        "request that federated the ServiceAccount with a live identity you can see "
        "(`outcome: identity_exists`), else 200 with the open request for it "
        "(`request_open`), else files the body as `POST /identity-requests/` does and answers "
        "201 (`created`). The body's roles and tags are not compared with what exists. "
        "Finding writes nothing; filing is audited as usual.",
        request=IdentityRequestCollectionView.Input,
        responses={200: EnsureOutput, 201: EnsureOutput},
        examples=[
            examples.REQUEST_CREATE_INPUT,
            examples.ENSURE_EXISTING,
            examples.ENSURE_CREATED,
            POLICY_VIOLATION_EXAMPLE,
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = IdentityRequestCollectionView.Input(
            data=request.data, context={"user": self.actor()}
        )
        data.is_valid(raise_exception=True)
        match = identity_request_ensure(requester=self.actor(), draft=data.draft())
        created = match.outcome == WorkloadOutcome.CREATED
        body = {
            **fresh(request, match.identity_request.pk),
            "outcome": match.outcome.value,
            "links": workload_links(request, match),
        }
        return Response(
            body,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={"Location": detail_url(request, match.identity_request.pk)},
        )


class FindingOutput(serializers.Serializer):
    field = serializers.CharField(help_text="The field as the policy names it: roles[0].scope.")
    pointer = serializers.CharField(help_text="JSON pointer into the body: #/roles/0/scope")
    rule = serializers.CharField()
    message = serializers.CharField()


class RiskOutput(serializers.Serializer):
    level = serializers.ChoiceField(choices=["low", "medium", "high"])
    reasons = serializers.ListField(child=serializers.CharField())


class ApprovalsNeededOutput(serializers.Serializer):
    approvers = serializers.IntegerField(help_text="Distinct security approvers (2: exception).")
    owner_teams = serializers.ListField(
        child=serializers.CharField(), help_text="Teams owning a scope, each must approve too."
    )
    risk = RiskOutput()


class PreviewRoleAssignmentOutput(serializers.Serializer):
    role = serializers.CharField()
    role_definition_guid = serializers.CharField()
    scope = serializers.CharField()


class PreviewOutput(serializers.Serializer):
    identity_name = serializers.CharField()
    identity_resource_id = serializers.CharField()
    location = serializers.CharField()
    federated_credential = serializers.DictField(child=serializers.CharField())
    role_assignments = PreviewRoleAssignmentOutput(many=True)
    manifests = serializers.CharField(help_text="ServiceAccount + Deployment YAML.")
    placeholders = serializers.ListField(
        child=serializers.CharField(),
        help_text="Fields Azure assigns on creation, shown as the nil GUID.",
    )


class DryRunOutput(serializers.Serializer):
    valid = serializers.BooleanField(help_text="Filing this body now would be accepted.")
    errors = FindingOutput(many=True)  # type: ignore[assignment]
    warnings = FindingOutput(many=True)
    approvals_needed = ApprovalsNeededOutput()
    preview = PreviewOutput(allow_null=True, help_text="null while the policy refuses it.")


class IdentityRequestValidateView(ApiView):
    """A dry run of filing."""

    write_scope = "request"

    @extend_schema(
        tags=[TAG],
        summary="Check a request without filing it (dry run)",
        description="The same body, validation and policy as `POST /identity-requests/`; "
        "answers 200 with `valid`, the policy's `errors` and `warnings`, the approvals filing "
        "would need and, when valid, a preview of the identity, federated credential, role "
        "assignments and manifests. Nothing is filed or audited. A malformed body (a missing "
        "field, a wrong type) is still a 400 problem, as for a create.",
        request=IdentityRequestCollectionView.Input,
        responses={200: DryRunOutput},
        examples=[examples.REQUEST_CREATE_INPUT, examples.DRY_RUN],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = IdentityRequestCollectionView.Input(
            data=request.data, context={"user": self.actor()}
        )
        data.is_valid(raise_exception=True)
        dry_run = identity_request_dry_run(requester=self.actor(), draft=data.draft())
        preview = None
        if dry_run.preview is not None:
            spec = dry_run.preview
            preview = {
                "identity_name": spec.identity_name,
                "identity_resource_id": spec.identity_resource_id,
                "location": spec.location,
                "federated_credential": {
                    "name": spec.fic_name,
                    "issuer": spec.oidc_issuer_url,
                    "subject": spec.fic_subject,
                    "audience": spec.audience,
                },
                "role_assignments": [
                    {
                        "role": assignment.role_name,
                        "role_definition_guid": assignment.role_definition_guid,
                        "scope": assignment.scope,
                    }
                    for assignment in spec.role_assignments
                ],
                "manifests": render_bundle(spec, DEFAULT_BUNDLE_KINDS),
                "placeholders": list(PLACEHOLDER_FIELDS),
            }
        body = {
            "valid": dry_run.result.ok,
            "errors": finding_entries(dry_run.result.violations),
            "warnings": finding_entries(dry_run.result.warnings),
            "approvals_needed": {
                "approvers": dry_run.approvals_required,
                "owner_teams": list(dry_run.owner_teams),
                "risk": {"level": dry_run.risk.level, "reasons": list(dry_run.risk.reasons)},
            },
            "preview": preview,
        }
        return Response(DryRunOutput(body).data)
