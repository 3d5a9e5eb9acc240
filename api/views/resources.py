"""The Azure resources a team may grant roles on (the request form's picker, for pipelines)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples
from api.problems import ProblemError
from api.views.base import ApiView
from identities.scope_lookup import ScopeLookupUnavailable
from identities.selectors.resources import resources_for

TAG = "catalog"
AZURE_RETRY_AFTER_SECONDS = 30


class ResourcePagination(LimitOffsetPagination):
    """`?limit=` (default 50, at most 200) and `?offset=`: the list is Azure's answer, not a
    table, so it is paged by position; `count` is the number of matches."""

    default_limit = 50
    max_limit = 200


class ResourceQuery(serializers.Serializer):
    team = serializers.CharField(
        required=False,
        max_length=100,
        help_text="One of your teams (approvers and admins: any team). Default: all your teams.",
    )
    q = serializers.CharField(
        required=False, max_length=200, help_text="Part of the name or the resource id."
    )
    type = serializers.CharField(
        required=False,
        max_length=200,
        help_text="An ARM resource type, e.g. Microsoft.KeyVault/vaults (any case).",
    )
    subscription = serializers.UUIDField(required=False, format="hex_verbose")
    role = serializers.CharField(
        required=False,
        max_length=200,
        help_text="A catalog role (name or GUID): only the resources of the types it is meant "
        "for (resource groups are left out: they are broad scopes).",
    )


class ResourceOutput(serializers.Serializer):
    id = serializers.CharField(help_text="The canonical scope: use it as a role's `scope`.")
    name = serializers.CharField()
    type = serializers.CharField()
    subscription_id = serializers.CharField()
    resource_group = serializers.CharField()
    location = serializers.CharField()
    team = serializers.CharField(help_text="The owning team.")
    owned_by = serializers.ChoiceField(
        choices=["resource_group", "tag"],
        help_text="resource_group: in a resource group the team owns; tag: tagged for the team "
        "(OWNERSHIP_TAG).",
    )


class ResourceListView(ApiView):
    pagination_class = ResourcePagination

    @extend_schema(
        tags=[TAG],
        summary="Azure resources your team may use",
        description="The resource groups your teams own, the resources in them and the "
        "resources tagged for your teams, read from Azure Resource Graph (cached briefly), in "
        "the subscriptions clusters may grant roles in. 503 with Retry-After when Azure cannot "
        "be asked.",
        parameters=[ResourceQuery],
        responses=ResourceOutput(many=True),
        examples=[
            OpenApiExample(
                "A key vault in the team's resource group",
                value={
                    "count": 1,
                    "next": None,
                    "previous": None,
                    "results": [
                        {
                            "id": examples.VAULT_SCOPE,
                            "name": "kv-payments",
                            "type": "Microsoft.KeyVault/vaults",
                            "subscription_id": examples.SUBSCRIPTION,
                            "resource_group": "rg-payments",
                            "location": "westeurope",
                            "team": "payments",
                            "owned_by": "resource_group",
                        }
                    ],
                },
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        query = ResourceQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        try:
            found = resources_for(
                self.actor(),
                team=filters.get("team", ""),
                q=filters.get("q", ""),
                resource_type=filters.get("type", ""),
                subscription=str(filters.get("subscription") or ""),
                role=filters.get("role", ""),
            )
        except ScopeLookupUnavailable as error:
            raise ProblemError(
                "service-unavailable",
                f"Azure Resource Graph could not be asked right now ({str(error)[:200]}); try "
                "again shortly.",
                headers={"Retry-After": str(AZURE_RETRY_AFTER_SECONDS)},
            ) from error
        page = self.paginate_queryset(found)
        assert page is not None  # noqa: S101 - this view has a paginator
        return self.get_paginated_response(ResourceOutput(page, many=True).data)
