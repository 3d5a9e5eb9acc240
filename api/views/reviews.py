"""Access reviews (recertification campaigns) and ownership transfers of identities.

Security opens and closes campaigns; each team lists and attests its own items; the evidence
export streams one record per attestation with its audit row's id and hash. Transfers are asked
by the giving team, consented by the receiving team and approved by security."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples
from api.idempotency import idempotent
from api.renderers import CsvRenderer, JsonLinesRenderer
from api.views.base import ApiView
from identities.models import CatalogRole, ReviewDecision, ReviewItemState, Team
from identities.selectors import identity_get
from identities.selectors.reviews import (
    access_review_campaign_get,
    access_review_campaigns_visible_to,
    access_review_evidence,
    access_review_item_get,
    access_review_items_to_review,
    access_review_items_visible_to,
    access_review_progress,
    evidence_csv,
    evidence_jsonl,
    ownership_transfer_get,
    ownership_transfers_visible_to,
)
from identities.services import (
    access_review_attest,
    access_review_close,
    access_review_open,
    ownership_transfer_approve,
    ownership_transfer_cancel,
    ownership_transfer_consent,
    ownership_transfer_reject,
    ownership_transfer_request,
)

TAG = "access reviews"
TRANSFER_TAG = "ownership transfers"


# --- serializers --------------------------------------------------------------------------------


class CampaignOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    opened_by = serializers.CharField(source="opened_by.username")
    opened_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField()
    grace_days = serializers.IntegerField()
    revoke_when_overdue = serializers.BooleanField()
    filter_team = serializers.CharField(source="filter_team.name", allow_null=True, default=None)
    filter_role = serializers.CharField(source="filter_role.name", allow_null=True, default=None)
    privileged_only = serializers.BooleanField()
    item_count = serializers.IntegerField()
    snapshot_sha256 = serializers.CharField(source="snapshot_hash")
    closed_at = serializers.DateTimeField(allow_null=True)


class ProgressOutput(serializers.Serializer):
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    percent = serializers.IntegerField()
    escalated = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    teams = serializers.SerializerMethodField()

    def get_teams(self, progress: Any) -> list[dict[str, Any]]:
        return [
            {"team": t.team, "total": t.total, "done": t.done, "counts": dict(t.counts)}
            for t in progress.teams
        ]


class CampaignDetailOutput(CampaignOutput):
    progress = serializers.SerializerMethodField()

    def get_progress(self, campaign: Any) -> dict[str, Any]:
        user = self.context["request"].user
        return dict(ProgressOutput(access_review_progress(user, campaign)).data)


class AttestationOutput(serializers.Serializer):
    attester = serializers.CharField(source="attester.username")
    decision = serializers.CharField()
    comment = serializers.CharField()
    as_security = serializers.BooleanField()
    time = serializers.DateTimeField(source="created_at")
    audit_row_id = serializers.IntegerField(source="audit_event_id")
    audit_row_hash = serializers.CharField(source="audit_event.hash")


class ItemOutput(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField(source="campaign_id")
    identity_id = serializers.IntegerField()
    identity = serializers.CharField(source="identity_name")
    team = serializers.CharField(source="team.name")
    roles = serializers.JSONField()
    privileged = serializers.BooleanField()
    state = serializers.CharField()
    decision = serializers.CharField()
    decided_at = serializers.DateTimeField(allow_null=True)
    escalated_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    follow_up_request = serializers.IntegerField(source="follow_up_request_id", allow_null=True)
    attestations = AttestationOutput(many=True)


class TransferOutput(serializers.Serializer):
    id = serializers.IntegerField()
    identity_id = serializers.IntegerField()
    identity = serializers.CharField(source="identity.name")
    from_team = serializers.CharField(source="from_team.name")
    to_team = serializers.CharField(source="to_team.name")
    requested_by = serializers.CharField(source="requested_by.username")
    justification = serializers.CharField()
    status = serializers.CharField()
    consented_by = serializers.CharField(
        source="consented_by.username", allow_null=True, default=None
    )
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()


# --- campaigns ----------------------------------------------------------------------------------


class CampaignCollectionView(ApiView):
    write_scope = "approve"

    class Input(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        due_at = serializers.DateTimeField()
        grace_days = serializers.IntegerField(min_value=0, max_value=365, default=0)
        revoke_when_overdue = serializers.BooleanField(default=False)
        team = serializers.SlugRelatedField(
            slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True
        )
        role = serializers.SlugRelatedField(
            slug_field="name", queryset=CatalogRole.objects.all(), required=False, allow_null=True
        )
        privileged_only = serializers.BooleanField(default=False)

    def get_queryset(self) -> Any:
        return access_review_campaigns_visible_to(self.request.user)

    @extend_schema(
        tags=[TAG],
        summary="List access reviews",
        examples=[examples.CAMPAIGN_LIST],
        description="Security, auditors and admins: every campaign; a team: those with its items.",
        responses=CampaignOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paginated(self.get_queryset().order_by("-id"), CampaignOutput)

    @extend_schema(
        tags=[TAG],
        summary="Open an access review",
        examples=[examples.CAMPAIGN_OPEN_INPUT, examples.CAMPAIGN_CREATED],
        description="Security only. Snapshots every live identity matching the filters (team, "
        "role, privileged only) as an item its team must attest by `due_at`. One audit row "
        "records the item count and the snapshot's SHA-256.",
        request=Input,
        responses={201: CampaignOutput},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        campaign = access_review_open(
            actor=self.actor(),
            name=values["name"],
            due_at=values["due_at"],
            grace_days=values["grace_days"],
            revoke_when_overdue=values["revoke_when_overdue"],
            team=values.get("team"),
            role=values.get("role"),
            privileged_only=values["privileged_only"],
        )
        url = reverse("api:access-review-detail", args=[campaign.pk])
        return Response(
            CampaignOutput(campaign).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": request.build_absolute_uri(url)},
        )


class CampaignDetailView(ApiView):
    @extend_schema(
        tags=[TAG],
        summary="Read an access review and its progress",
        examples=[examples.CAMPAIGN_DETAIL],
        description="Progress counts (by decision or state, overall and per team) cover the "
        "items you may see.",
        responses=CampaignDetailOutput,
    )
    def get(self, request: Request, pk: int) -> Response:
        campaign = access_review_campaign_get(user=self.actor(), pk=pk)
        return Response(CampaignDetailOutput(campaign, context={"request": request}).data)


class CampaignCloseView(ApiView):
    write_scope = "approve"

    @extend_schema(
        tags=[TAG],
        summary="Close an access review",
        examples=[examples.CAMPAIGN_OUT],
        request=None,
        responses=CampaignOutput,
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        campaign = access_review_campaign_get(user=self.actor(), pk=pk)
        return Response(
            CampaignOutput(access_review_close(campaign=campaign, actor=self.actor())).data
        )


class CampaignItemsView(ApiView):
    class Query(serializers.Serializer):
        state = serializers.ChoiceField(choices=ReviewItemState.values, required=False)
        to_review = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        tags=[TAG],
        summary="List a review's items",
        examples=[examples.REVIEW_ITEMS],
        description="Your teams' items (see-all roles: every item). `to_review=true`: those "
        "still waiting for you; `state=` filters by state.",
        parameters=[Query],
        responses=ItemOutput(many=True),
    )
    def get(self, request: Request, pk: int) -> Response:
        query = self.Query(data=request.query_params)
        query.is_valid(raise_exception=True)
        campaign = access_review_campaign_get(user=self.actor(), pk=pk)
        items = (
            access_review_items_to_review(self.actor(), campaign)
            if query.validated_data["to_review"]
            else access_review_items_visible_to(self.actor(), campaign)
        )
        if "state" in query.validated_data:
            items = items.filter(state=query.validated_data["state"])
        return self.paginated(items.order_by("-id"), ItemOutput)


class ItemAttestView(ApiView):
    write_scope = "request"

    class Input(serializers.Serializer):
        decision = serializers.ChoiceField(choices=ReviewDecision.values)
        comment = serializers.CharField(
            max_length=4000, required=False, default="", allow_blank=True
        )

    @extend_schema(
        tags=[TAG],
        summary="Attest a review item",
        examples=[examples.ATTEST_INPUT],
        description="`keep` (still needed), `reduce` (file a change request next), or `remove` "
        "(files a decommission request). The owning team attests; privileged access is kept "
        "only by two different attesters, or one security approver. Each attestation writes "
        "its own audit row.",
        request=Input,
        responses=ItemOutput,
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        item = access_review_item_get(user=self.actor(), pk=pk)
        access_review_attest(
            item=item,
            attester=self.actor(),
            decision=data.validated_data["decision"],
            comment=data.validated_data["comment"],
        )
        return Response(ItemOutput(access_review_item_get(user=self.actor(), pk=pk)).data)


class EvidenceView(ApiView):
    renderer_classes = [JsonLinesRenderer, CsvRenderer]
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="Export a review's evidence",
        examples=[examples.EVIDENCE_JSONL, examples.EVIDENCE_CSV],
        description="One record per attestation (identity, roles, scopes, attester, decision, "
        "time, `audit_row_id` and `audit_row_hash` to find it on the audit chain) and one per "
        "unattested item. JSON Lines by default; CSV with `Accept: text/csv` or `?format=csv`.",
        responses={
            (200, "application/jsonl"): OpenApiResponse(OpenApiTypes.STR),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
        },
    )
    def get(self, request: Request, pk: int) -> StreamingHttpResponse:
        campaign = access_review_campaign_get(user=self.actor(), pk=pk)
        records = access_review_evidence(self.actor(), campaign)
        fmt = request.accepted_renderer.format
        response = StreamingHttpResponse(
            evidence_csv(records) if fmt == "csv" else evidence_jsonl(records),
            content_type=f"{request.accepted_renderer.media_type}; charset=utf-8",
        )
        name = f"access-review-{campaign.pk}-evidence.{fmt}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


# --- ownership transfers ------------------------------------------------------------------------


class TransferCollectionView(ApiView):
    write_scope = "request"

    class Input(serializers.Serializer):
        identity = serializers.IntegerField(min_value=1)
        to_team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.all())
        justification = serializers.CharField(max_length=4000)

    def get_queryset(self) -> Any:
        return ownership_transfers_visible_to(self.request.user)

    @extend_schema(
        tags=[TRANSFER_TAG],
        summary="List ownership transfers",
        examples=[examples.TRANSFER_LIST],
        description="Transfers from or to your teams (see-all roles: every one).",
        responses=TransferOutput(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paginated(self.get_queryset().order_by("-id"), TransferOutput)

    @extend_schema(
        tags=[TRANSFER_TAG],
        summary="Ask to transfer an identity to another team",
        examples=[examples.TRANSFER_INPUT],
        description="A member of the identity's team asks; the receiving team consents, then "
        "security approves. On approval the identity's team and its Azure `team` tag change.",
        request=Input,
        responses={201: TransferOutput},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        identity = identity_get(user=self.actor(), pk=data.validated_data["identity"])
        transfer = ownership_transfer_request(
            requester=self.actor(),
            identity=identity,
            to_team=data.validated_data["to_team"],
            justification=data.validated_data["justification"],
        )
        url = reverse("api:ownership-transfer-detail", args=[transfer.pk])
        return Response(
            TransferOutput(transfer).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": request.build_absolute_uri(url)},
        )


class TransferDetailView(ApiView):
    @extend_schema(
        tags=[TRANSFER_TAG],
        summary="Read an ownership transfer",
        examples=[examples.TRANSFER_OUT],
        responses=TransferOutput,
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(TransferOutput(ownership_transfer_get(user=self.actor(), pk=pk)).data)


class TransferConsentView(ApiView):
    write_scope = "request"

    @extend_schema(
        tags=[TRANSFER_TAG],
        summary="Consent to receive an identity",
        examples=[examples.TRANSFER_OUT],
        description="A member of the receiving team.",
        request=None,
        responses=TransferOutput,
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        transfer = ownership_transfer_get(user=self.actor(), pk=pk)
        return Response(
            TransferOutput(ownership_transfer_consent(transfer=transfer, actor=self.actor())).data
        )


class TransferApproveView(ApiView):
    write_scope = "approve"

    class Input(serializers.Serializer):
        comment = serializers.CharField(
            max_length=4000, required=False, default="", allow_blank=True
        )

    @extend_schema(
        tags=[TRANSFER_TAG],
        summary="Approve an ownership transfer",
        examples=[examples.TRANSFER_APPROVE_INPUT],
        description="Security, once the receiving team has consented.",
        request=Input,
        responses=TransferOutput,
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        transfer = ownership_transfer_get(user=self.actor(), pk=pk)
        transfer = ownership_transfer_approve(
            transfer=transfer, approver=self.actor(), comment=data.validated_data["comment"]
        )
        return Response(TransferOutput(transfer).data)


class TransferRejectView(ApiView):
    write_scope = "request"

    class Input(serializers.Serializer):
        comment = serializers.CharField(max_length=4000)

    @extend_schema(
        tags=[TRANSFER_TAG],
        summary="Reject an ownership transfer",
        examples=[examples.TRANSFER_REJECT_INPUT],
        description="The receiving team or security; the comment says why.",
        request=Input,
        responses=TransferOutput,
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        transfer = ownership_transfer_get(user=self.actor(), pk=pk)
        transfer = ownership_transfer_reject(
            transfer=transfer, actor=self.actor(), comment=data.validated_data["comment"]
        )
        return Response(TransferOutput(transfer).data)


class TransferCancelView(ApiView):
    write_scope = "request"

    @extend_schema(
        tags=[TRANSFER_TAG],
        summary="Cancel an ownership transfer",
        examples=[examples.TRANSFER_OUT],
        description="The giving team, while it is open.",
        request=None,
        responses=TransferOutput,
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        transfer = ownership_transfer_get(user=self.actor(), pk=pk)
        return Response(
            TransferOutput(ownership_transfer_cancel(transfer=transfer, actor=self.actor())).data
        )
