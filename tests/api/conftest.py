"""Fixtures of the API tests: clients signed in as the named cast or holding tokens, and
requests in each state (ready ones built from the domain's services, no Azure involved)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tokens import api_token_create
from identities import roles
from identities.catalog import CATALOG, catalog_ensure
from identities.models import (
    AuditEvent,
    CatalogRole,
    ChildStatus,
    FederatedCredential,
    Identity,
    IdentityRequest,
    RoleAssignment,
)
from identities.policy import RoleDraft
from identities.services import (
    identity_request_approve,
    identity_request_create,
    identity_request_mark_failed,
    identity_request_mark_provisioning,
    identity_request_mark_ready,
)
from tests.support.people import SEARCH_VAULT_SCOPE, TENANT, VAULT_SCOPE, DraftFactory

CLIENT_ID = "8f2c7a51-0e0b-4f6e-9b7d-2d3c4b5a6f70"
PRINCIPAL_ID = "ce2ce14e-85d7-4629-bdbc-454d0519d987"

FileRequest = Callable[..., IdentityRequest]
TokenFactory = Callable[..., str]


@pytest.fixture
def role_groups(db: None) -> None:
    """tests.support.people's fixture, in one query when the groups the migrations made are
    intact (the usual case): the authorization matrix asks for it a few hundred times."""
    expected = sum(len(perms) for perms in roles.GROUP_PERMISSIONS.values())
    granted = Group.permissions.through.objects.filter(group__name__in=roles.ROLE_GROUPS)
    if granted.count() < expected:
        roles.groups_ensure(Group, Permission, ContentType)


@pytest.fixture
def catalog(db: None) -> dict[str, CatalogRole]:
    """tests.support.people's fixture, without rewriting an intact catalog."""
    by_name = {role.name: role for role in CatalogRole.objects.all()}
    if len(by_name) < len(CATALOG):
        catalog_ensure(CatalogRole)
        by_name = {role.name: role for role in CatalogRole.objects.all()}
    return by_name


@pytest.fixture(autouse=True)
def fresh_throttles() -> Iterator[None]:
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def client_for() -> Callable[[Any], APIClient]:
    """`client_for(user)`: a client signed in with a session, as the web UI is."""

    def make(user: Any) -> APIClient:
        client = APIClient()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def token_client() -> Callable[[str], APIClient]:
    """`token_client(raw)`: a client sending `Authorization: Bearer raw`."""

    def make(raw: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@pytest.fixture
def make_token() -> TokenFactory:
    """`make_token(user, scopes, expired=False, revoked=False)` → the plaintext token."""

    def make(user: Any, scopes: list[str], *, expired: bool = False, revoked: bool = False) -> str:
        token, raw = api_token_create(
            user=user,
            name="test-pipeline",
            scopes=scopes,
            expires_at=timezone.now() + timedelta(days=1),
        )
        changes: dict[str, Any] = {}
        if expired:
            changes["expires_at"] = timezone.now() - timedelta(seconds=1)
        if revoked:
            changes["revoked_at"] = timezone.now()
        if changes:
            ApiToken.objects.filter(pk=token.pk).update(**changes)
        return raw

    return make


@pytest.fixture
def file_request(requester: Any, make_draft: DraftFactory) -> FileRequest:
    """File a request as `requester` (or `as_user=`), with draft overrides."""

    def file(*, as_user: Any = None, **overrides: Any) -> IdentityRequest:
        return identity_request_create(
            requester=as_user or requester, draft=make_draft(**overrides)
        )

    return file


def search_overrides(**extra: Any) -> dict[str, Any]:
    """Draft overrides for a request of team `search` (the outsider's team)."""
    return {
        "team": "search",
        "namespace": "search",
        "app_name": "indexer",
        "service_account": "indexer",
        "roles": (RoleDraft("Key Vault Secrets User", SEARCH_VAULT_SCOPE),),
        **extra,
    }


@pytest.fixture
def pending_request(file_request: FileRequest) -> IdentityRequest:
    return file_request()


def approve(identity_request: IdentityRequest, approver: Any) -> IdentityRequest:
    return identity_request_approve(identity_request=identity_request, approver=approver)


def make_ready(identity_request: IdentityRequest) -> IdentityRequest:
    """Do what a successful provisioning run records (ids from Azure, children active)."""
    identity_request_mark_provisioning(identity_request=identity_request)
    identity = identity_request.identity
    assert identity is not None
    Identity.objects.filter(pk=identity.pk).update(
        client_id=CLIENT_ID,
        principal_id=PRINCIPAL_ID,
        tenant_id=TENANT,
        resource_id=identity.expected_resource_id,
    )
    FederatedCredential.objects.filter(identity_request=identity_request).update(
        status=ChildStatus.ACTIVE
    )
    for assignment in RoleAssignment.objects.filter(identity_request=identity_request):
        RoleAssignment.objects.filter(pk=assignment.pk).update(
            status=ChildStatus.ACTIVE,
            name=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{assignment.scope}/{assignment.pk}")),
        )
    identity_request.refresh_from_db()
    identity_request_mark_ready(identity_request=identity_request)
    identity_request.refresh_from_db()
    return identity_request


def make_failed(identity_request: IdentityRequest) -> IdentityRequest:
    identity_request_mark_provisioning(identity_request=identity_request)
    identity_request_mark_failed(identity_request=identity_request, error="AuthorizationFailed")
    identity_request.refresh_from_db()
    return identity_request


@pytest.fixture
def ready_request(pending_request: IdentityRequest, approver: Any) -> IdentityRequest:
    return make_ready(approve(pending_request, approver))


@pytest.fixture
def failed_request(pending_request: IdentityRequest, approver: Any) -> IdentityRequest:
    return make_failed(approve(pending_request, approver))


def audit_count(**filters: Any) -> int:
    return AuditEvent.objects.filter(**filters).count()


def new_request_body(**overrides: Any) -> dict[str, Any]:
    """The contract's POST /api/v1/identity-requests/ body for the payments team."""
    body: dict[str, Any] = {
        "app_name": "checkout",
        "team": "payments",
        "cluster": "aks-test",
        "namespace": "payments",
        "service_account": "checkout",
        "roles": [{"role": "Key Vault Secrets User", "scope": VAULT_SCOPE}],
        "tags": {"costCentre": "cc-4711", "environment": "dev"},
        "justification": "Checkout reads its payment provider secrets from Key Vault.",
    }
    body.update(overrides)
    return body
