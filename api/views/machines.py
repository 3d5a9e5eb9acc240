"""A team's machines: OIDC trust rules (a CI system's own token acts as a service principal of
the team) and team service tokens. Listing needs `read`; creating, disabling and revoking are
for signed-in people only, so no credential a pipeline holds can widen or outlive itself."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.machines import (
    service_token_create,
    service_token_get,
    service_token_revoke,
    service_tokens_visible_to,
    trust_rule_create,
    trust_rule_disable,
    trust_rule_get,
    trust_rules_visible_to,
)
from accounts.tokens import SERVICE_SCOPES
from api import examples
from api.idempotency import idempotent, withhold_from_replays
from api.permissions import HasTokenScope, SessionOnlyForWrites
from api.views.base import ApiView
from identities.errors import NotFoundError
from identities.models import Team

TAG = "machines"
DEFAULT_LIFETIME_DAYS = 90
MAX_LIFETIME_DAYS = 365


def _team(name: str) -> Team:
    team = Team.objects.filter(name=name).first()
    if team is None:
        raise NotFoundError(f"Team {name!r} was not found.")
    return team


class TrustRuleOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    team = serializers.CharField(source="service_principal.team.name")
    service_principal = serializers.CharField(
        source="service_principal.label", help_text="What the audit trail names, svc:team/name."
    )
    issuer = serializers.CharField()
    audience = serializers.CharField()
    subject = serializers.CharField()
    subject_pattern = serializers.CharField()
    claims = serializers.DictField(child=serializers.CharField())
    scopes = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    disabled_at = serializers.DateTimeField(allow_null=True)
    is_active = serializers.BooleanField()


class TrustRuleCollectionView(ApiView):
    permission_classes = [IsAuthenticated, SessionOnlyForWrites, HasTokenScope]

    class Input(serializers.Serializer):
        team = serializers.CharField(max_length=63)
        service_principal = serializers.CharField(
            max_length=63, help_text="The principal's name within the team (created on first use)."
        )
        name = serializers.CharField(max_length=100, help_text="What the rule is for.")
        issuer = serializers.CharField(
            max_length=300, help_text="The token's `iss`, byte for byte; https only."
        )
        audience = serializers.CharField(max_length=300)
        subject = serializers.CharField(max_length=300, required=False, default="")
        subject_pattern = serializers.CharField(
            max_length=300, required=False, default="", help_text="`*` matches any characters."
        )
        claims = serializers.DictField(
            child=serializers.CharField(max_length=300), required=False, default=dict
        )
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=SERVICE_SCOPES), min_length=1, max_length=2
        )

    def get_queryset(self) -> Any:
        return trust_rules_visible_to(self.actor())

    @extend_schema(
        tags=[TAG],
        summary="List trust rules",
        description="Your teams' rules (every team's for approvers, auditors and admins), "
        "disabled ones included.",
        responses=TrustRuleOutput(many=True),
        examples=[examples.TRUST_RULE_LIST],
    )
    def get(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), TrustRuleOutput)

    @extend_schema(
        tags=[TAG],
        summary="Register a trust rule",
        description="Signed-in requesters of the team, and admins. A token of `issuer` for "
        "`audience` whose `sub` equals `subject` (or matches `subject_pattern`) and whose "
        "claims equal `claims` then acts as the team's `service_principal` with `scopes`.",
        request=Input,
        responses={201: TrustRuleOutput},
        examples=[examples.TRUST_RULE_CREATE_INPUT, examples.TRUST_RULE_CREATED],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        rule = trust_rule_create(actor=self.actor(), team=_team(values.pop("team")), **values)
        url = request.build_absolute_uri(reverse("api:trust-rule-list"))
        return Response(
            TrustRuleOutput(rule).data, status=status.HTTP_201_CREATED, headers={"Location": url}
        )


class TrustRuleDisableView(ApiView):
    permission_classes = [IsAuthenticated, SessionOnlyForWrites, HasTokenScope]

    @extend_schema(
        tags=[TAG],
        summary="Disable a trust rule",
        description="At once and for good. Disabling a disabled rule is harmless.",
        request=None,
        responses={200: TrustRuleOutput},
        examples=[examples.TRUST_RULE_DISABLED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        rule = trust_rule_get(user=self.actor(), pk=pk)
        rule = trust_rule_disable(rule=rule, actor=self.actor())
        return Response(TrustRuleOutput(rule).data)


class ServiceTokenOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    team = serializers.CharField(source="user.service_principal.team.name")
    service_principal = serializers.CharField(source="user.username")
    prefix = serializers.CharField(help_text="The token's first characters, to recognise it.")
    scopes = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    is_active = serializers.BooleanField()


class CreatedServiceTokenOutput(ServiceTokenOutput):
    token = serializers.CharField(help_text="The secret, shown this once; only a hash is kept.")


class ServiceTokenCollectionView(ApiView):
    permission_classes = [IsAuthenticated, SessionOnlyForWrites, HasTokenScope]

    class Input(serializers.Serializer):
        team = serializers.CharField(max_length=63)
        service_principal = serializers.CharField(max_length=63)
        name = serializers.CharField(max_length=100, help_text="What uses it, e.g. a pipeline.")
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=SERVICE_SCOPES), min_length=1, max_length=2
        )
        expires_in_days = serializers.IntegerField(
            min_value=1, max_value=MAX_LIFETIME_DAYS, default=DEFAULT_LIFETIME_DAYS
        )

    def get_queryset(self) -> Any:
        return service_tokens_visible_to(self.actor())

    @extend_schema(
        tags=[TAG],
        summary="List team service tokens",
        description="Your teams' service tokens; revoked and expired ones included.",
        responses=ServiceTokenOutput(many=True),
        examples=[examples.SERVICE_TOKEN_LIST],
    )
    def get(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), ServiceTokenOutput)

    @extend_schema(
        tags=[TAG],
        summary="Create a team service token",
        description="Signed-in requesters of the team, and admins. The token belongs to the "
        "team's service principal, not to you; the secret is in the response once.",
        request=Input,
        responses={201: CreatedServiceTokenOutput},
        examples=[examples.SERVICE_TOKEN_CREATE_INPUT, examples.SERVICE_TOKEN_CREATED],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        token, secret = service_token_create(
            actor=self.actor(),
            team=_team(values["team"]),
            service_principal=values["service_principal"],
            name=values["name"],
            scopes=values["scopes"],
            expires_at=timezone.now() + timedelta(days=values["expires_in_days"]),
        )
        body = {**ServiceTokenOutput(token).data, "token": secret}
        url = request.build_absolute_uri(reverse("api:service-token-list"))
        response = Response(body, status=status.HTTP_201_CREATED, headers={"Location": url})
        return withhold_from_replays(response, "token")


class ServiceTokenRevokeView(ApiView):
    permission_classes = [IsAuthenticated, SessionOnlyForWrites, HasTokenScope]

    @extend_schema(
        tags=[TAG],
        summary="Revoke a team service token",
        description="At once and for good. Revoking a revoked token is harmless.",
        request=None,
        responses={200: ServiceTokenOutput},
        examples=[examples.SERVICE_TOKEN_REVOKED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        token = service_token_get(user=self.actor(), pk=pk)
        token = service_token_revoke(token=token, actor=self.actor())
        return Response(ServiceTokenOutput(token).data)
