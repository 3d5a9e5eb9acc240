"""Webhook endpoints: list, register (the secret shown once), read, change, delete, rotate the
secret, the delivery log, redeliver. Writes are for signed-in people only: a leaked API token
must not be able to point the portal's events somewhere else."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples
from api.idempotency import idempotent, withhold_from_replays
from api.views.base import ApiView
from identities.errors import NotFoundError
from identities.models import Team, WebhookFormat
from identities.selectors.notifications import (
    webhook_deliveries_of,
    webhook_endpoint_get,
    webhook_endpoints_visible_to,
)
from identities.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
    webhook_redeliver,
)
from identities.services.webhooks import WEBHOOK_EVENTS

TAG = "webhooks"


class EndpointOutput(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(
        source="team.name", allow_null=True, default=None, help_text="null: global (security)."
    )
    url = serializers.CharField(
        source="shown_url",
        help_text="Where events go. A Teams or Slack incoming webhook URL is itself the "
        "credential: it is stored encrypted and shown only as scheme, host and a SHA-256 prefix.",
    )
    description = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=WEBHOOK_EVENTS))
    format = serializers.ChoiceField(choices=WebhookFormat.values)
    is_active = serializers.BooleanField()
    disabled_reason = serializers.CharField()
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class CreatedEndpointOutput(EndpointOutput):
    secret = serializers.CharField(
        help_text="The signing secret (whsec_…), shown this once. A replay of this response "
        "(same Idempotency-Key) has it empty: rotate the secret to get a new one."
    )


class DeliveryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField(source="notification.event")
    webhook_id = serializers.CharField(
        source="notification.message_id",
        help_text="The message's webhook-id header: the same on every attempt of one message.",
    )
    delivery_status = serializers.CharField(source="notification.status")
    attempted_at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.IntegerField()
    error = serializers.CharField()


def _team(name: str | None) -> Team | None:
    if name is None:
        return None
    team = Team.objects.filter(name=name).first()
    if team is None:
        raise serializers.ValidationError({"team": [f"No team is named {name!r}."]})
    return team


class WebhookCollectionView(ApiView):
    class Input(serializers.Serializer):
        team = serializers.CharField(
            allow_null=True, help_text="The team's name; null for a global (security) endpoint."
        )
        url = serializers.CharField(max_length=2000)
        events = serializers.ListField(
            child=serializers.ChoiceField(choices=WEBHOOK_EVENTS), min_length=1
        )
        description = serializers.CharField(max_length=200, required=False, default="")
        format = serializers.ChoiceField(
            choices=WebhookFormat.values,
            required=False,
            default=WebhookFormat.STANDARD,
            help_text="standard: a signed Standard Webhooks event; teams: an Adaptive Card for a "
            "Microsoft Teams incoming webhook; slack: a Block Kit message for a Slack incoming "
            "webhook (Teams and Slack bodies are not signed: their URL is the secret).",
        )

    def get_queryset(self) -> Any:
        return webhook_endpoints_visible_to(self.actor())

    @extend_schema(
        tags=[TAG],
        summary="List the webhook endpoints you manage",
        description="Your teams' endpoints; global ones too for approvers and admins.",
        responses=EndpointOutput(many=True),
        examples=[examples.WEBHOOK_LIST],
    )
    def get(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), EndpointOutput)

    @extend_schema(
        tags=[TAG],
        summary="Register a webhook endpoint",
        description="Signed-in users only. Payloads are signed per Standard Webhooks "
        "(webhook-id, webhook-timestamp, webhook-signature) with the secret in the response, "
        "shown once.",
        request=Input,
        responses={201: CreatedEndpointOutput},
        examples=[examples.WEBHOOK_CREATE_INPUT, examples.WEBHOOK_CREATED],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        endpoint, secret = webhook_endpoint_create(
            actor=self.actor(),
            team=_team(values["team"]),
            url=values["url"],
            events=values["events"],
            description=values["description"],
            format=values["format"],
        )
        url = request.build_absolute_uri(reverse("api:webhook-detail", args=[endpoint.pk]))
        response = Response(
            {**EndpointOutput(endpoint).data, "secret": secret},
            status=status.HTTP_201_CREATED,
            headers={"Location": url},
        )
        return withhold_from_replays(response, "secret")


class WebhookDetailView(ApiView):
    pagination_class = None

    class Input(serializers.Serializer):
        url = serializers.CharField(max_length=2000, required=False)
        events = serializers.ListField(
            child=serializers.ChoiceField(choices=WEBHOOK_EVENTS), min_length=1, required=False
        )
        description = serializers.CharField(max_length=200, required=False)
        is_active = serializers.BooleanField(required=False)
        format = serializers.ChoiceField(choices=WebhookFormat.values, required=False)

    @extend_schema(
        tags=[TAG],
        summary="Read a webhook endpoint",
        responses=EndpointOutput,
        examples=[examples.WEBHOOK],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(EndpointOutput(webhook_endpoint_get(self.actor(), pk)).data)

    @extend_schema(
        tags=[TAG],
        summary="Change a webhook endpoint",
        description="Switching a disabled endpoint back on clears why it was disabled.",
        request=Input,
        responses=EndpointOutput,
        examples=[examples.WEBHOOK_CHANGE_INPUT, examples.WEBHOOK],
    )
    def patch(self, request: Request, pk: int) -> Response:
        endpoint = webhook_endpoint_get(self.actor(), pk)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(
            actor=self.actor(), endpoint=endpoint, **data.validated_data
        )
        return Response(EndpointOutput(endpoint).data)

    @extend_schema(
        tags=[TAG],
        summary="Delete a webhook endpoint",
        description="Its pending deliveries and its log go with it. Answers what was deleted.",
        responses={200: EndpointOutput},
        examples=[examples.WEBHOOK],
    )
    def delete(self, request: Request, pk: int) -> Response:
        endpoint = webhook_endpoint_get(self.actor(), pk)
        body = EndpointOutput(endpoint).data
        webhook_endpoint_delete(actor=self.actor(), endpoint=endpoint)
        return Response(body)


class WebhookRotateView(ApiView):
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="Rotate a webhook endpoint's secret",
        description="The new secret is in the response, once; the previous one keeps signing "
        "(a second signature) until previous_secret_expires_at.",
        request=None,
        responses={200: CreatedEndpointOutput},
        examples=[examples.WEBHOOK_ROTATED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        endpoint = webhook_endpoint_get(self.actor(), pk)
        endpoint, secret = webhook_endpoint_rotate_secret(actor=self.actor(), endpoint=endpoint)
        response = Response({**EndpointOutput(endpoint).data, "secret": secret})
        return withhold_from_replays(response, "secret")


class WebhookDeliveriesView(ApiView):
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="The delivery log of a webhook endpoint",
        description="The newest 100 attempts: status code, time taken, error.",
        responses=DeliveryOutput(many=True),
        examples=[examples.WEBHOOK_DELIVERIES],
    )
    def get(self, request: Request, pk: int) -> Response:
        endpoint = webhook_endpoint_get(self.actor(), pk)
        return Response(DeliveryOutput(webhook_deliveries_of(endpoint), many=True).data)


class WebhookRedeliverView(ApiView):
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="Send a logged delivery's message again",
        description="The message (same webhook-id) goes out again with fresh retries.",
        request=None,
        responses={202: DeliveryOutput},
        examples=[examples.WEBHOOK_REDELIVERED],
    )
    @idempotent
    def post(self, request: Request, pk: int, delivery_pk: int) -> Response:
        endpoint = webhook_endpoint_get(self.actor(), pk)
        delivery = endpoint.deliveries.select_related("notification").filter(pk=delivery_pk).first()
        if delivery is None:
            raise NotFoundError(f"Delivery {delivery_pk} of webhook {pk} was not found.")
        webhook_redeliver(actor=self.actor(), notification=delivery.notification)
        delivery.notification.refresh_from_db()
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)
