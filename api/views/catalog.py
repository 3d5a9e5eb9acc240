"""What requests are made of: clusters, the namespaces your teams own, the role catalog."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples
from api.views.base import ApiView
from identities.errors import NotFoundError
from identities.selectors import catalog_roles, clusters_for, namespaces_owned_by

TAG = "catalog"


class ClusterOutput(serializers.Serializer):
    name = serializers.CharField()
    subscription_id = serializers.CharField(help_text="Where identities for it are created.")
    resource_group = serializers.CharField()
    location = serializers.CharField()
    oidc_issuer_url = serializers.CharField()
    workload_identity_enabled = serializers.BooleanField()


class ClusterListView(ApiView):
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="List clusters",
        description="Clusters on which one of your teams owns a namespace (approvers, "
        "auditors, admins: all).",
        responses=ClusterOutput(many=True),
        examples=[examples.CLUSTERS],
    )
    def get(self, request: Request) -> Response:
        return Response(ClusterOutput(clusters_for(request.user), many=True).data)


class NamespacesOutput(serializers.Serializer):
    cluster = serializers.CharField()
    namespaces = serializers.ListField(
        child=serializers.CharField(), help_text="Owned by your teams: requests may bind these."
    )


class ClusterNamespacesView(ApiView):
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="Namespaces your teams own on a cluster",
        responses=NamespacesOutput,
        examples=[examples.NAMESPACES],
    )
    def get(self, request: Request, name: str) -> Response:
        cluster = clusters_for(request.user).filter(name=name).first()
        if cluster is None:
            raise NotFoundError(f"Cluster {name!r} was not found.")
        owned = namespaces_owned_by(request.user, cluster)
        return Response(NamespacesOutput({"cluster": cluster.name, "namespaces": owned}).data)


class CatalogRoleOutput(serializers.Serializer):
    name = serializers.CharField(help_text="Use this (or the GUID) in a request's roles.")
    role_definition_guid = serializers.CharField()
    description = serializers.CharField()
    resource_types = serializers.ListField(
        child=serializers.CharField(), help_text="ARM types the role fits (empty: any)."
    )
    privileged = serializers.BooleanField(help_text="Refused unless filed as an exception.")
    can_assign_roles = serializers.BooleanField()


class RoleListView(ApiView):
    pagination_class = None

    @extend_schema(
        tags=[TAG],
        summary="The role catalog",
        description="The Azure built-in roles teams may request, least privileged first.",
        responses=CatalogRoleOutput(many=True),
        examples=[examples.ROLES],
    )
    def get(self, request: Request) -> Response:
        return Response(CatalogRoleOutput(catalog_roles(), many=True).data)
