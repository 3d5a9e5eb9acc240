"""API tokens: list yours, create one (shown once), revoke one; and who you are."""

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

from accounts.models import ApiToken
from accounts.tokens import SCOPES, api_token_create, api_token_get, api_token_revoke, api_tokens_of
from api import examples
from api.idempotency import idempotent, withhold_from_replays
from api.permissions import HasTokenScope, SessionOnlyForWrites, request_token
from api.views.base import ApiView
from identities import roles
from identities.selectors import teams_of

TAG = "tokens"
DEFAULT_LIFETIME_DAYS = 90
MAX_LIFETIME_DAYS = 365


class TokenOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The token's first characters, to recognise it.")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=SCOPES))
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    is_active = serializers.BooleanField()


class CreatedTokenOutput(TokenOutput):
    token = serializers.CharField(
        help_text="The secret. Shown this once; only a hash is kept. A replay of this response "
        "(same Idempotency-Key) has it empty: revoke that token and create another."
    )


class TokenCollectionView(ApiView):
    permission_classes = [IsAuthenticated, SessionOnlyForWrites, HasTokenScope]

    class Input(serializers.Serializer):
        name = serializers.CharField(max_length=100, help_text="What uses it, e.g. a pipeline.")
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=SCOPES), min_length=1, max_length=3
        )
        expires_in_days = serializers.IntegerField(
            min_value=1, max_value=MAX_LIFETIME_DAYS, default=DEFAULT_LIFETIME_DAYS
        )

    def get_queryset(self) -> Any:
        return api_tokens_of(self.actor())

    @extend_schema(
        tags=[TAG],
        summary="List your API tokens",
        description="Revoked and expired ones included; never the secrets.",
        responses=TokenOutput(many=True),
        examples=[examples.TOKEN_LIST],
    )
    def get(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), TokenOutput)

    @extend_schema(
        tags=[TAG],
        summary="Create an API token",
        description="Signed-in users only (a token cannot mint tokens). The secret is in the "
        "response once. `request` needs the requester role, `approve` the approver role.",
        request=Input,
        responses={201: CreatedTokenOutput},
        examples=[examples.TOKEN_CREATE_INPUT, examples.TOKEN_CREATED],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        token, secret = api_token_create(
            user=self.actor(),
            name=values["name"],
            scopes=values["scopes"],
            expires_at=timezone.now() + timedelta(days=values["expires_in_days"]),
        )
        body = {**TokenOutput(token).data, "token": secret}
        url = request.build_absolute_uri(reverse("api:token-list"))
        response = Response(body, status=status.HTTP_201_CREATED, headers={"Location": url})
        # Only a hash of the secret is kept anywhere, the replay cache included.
        return withhold_from_replays(response, "token")


class TokenRevokeView(ApiView):
    permission_classes = [IsAuthenticated, SessionOnlyForWrites, HasTokenScope]

    @extend_schema(
        tags=[TAG],
        summary="Revoke an API token",
        description="Takes effect at once and for good. Revoking a revoked token is harmless.",
        request=None,
        responses={200: TokenOutput},
        examples=[examples.TOKEN_REVOKED],
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        token = api_token_get(user=self.actor(), pk=pk)
        token = api_token_revoke(token=token, actor=self.actor())
        return Response(TokenOutput(token).data)


class MeTokenOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)


class MeOutput(serializers.Serializer):
    username = serializers.CharField()
    roles = serializers.ListField(
        child=serializers.ChoiceField(choices=roles.ROLE_GROUPS), help_text="Portal roles."
    )
    teams = serializers.ListField(child=serializers.CharField())
    token = MeTokenOutput(allow_null=True, help_text="The token used, if any.")


class MeView(ApiView):
    pagination_class = None
    read_scope = None

    @extend_schema(
        tags=[TAG],
        summary="Who am I",
        description="The authenticated user, their roles and teams, and the token's scopes "
        "and expiry: a pipeline's first call to check its credentials. Needs no scope.",
        responses=MeOutput,
        examples=[examples.ME],
    )
    def get(self, request: Request) -> Response:
        user = request.user
        held = [
            name
            for name, check in (
                (roles.REQUESTERS, roles.is_requester),
                (roles.APPROVERS, roles.is_approver),
                (roles.AUDITORS, roles.is_auditor),
                (roles.ADMINS, roles.is_admin),
            )
            if check(user)
        ]
        token: ApiToken | None = request_token(request)
        body = {
            "username": user.get_username(),
            "roles": held,
            "teams": list(teams_of(user).values_list("name", flat=True)),
            "token": MeTokenOutput(token).data if token else None,
        }
        return Response(MeOutput(body).data)
