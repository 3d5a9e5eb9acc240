"""Fixtures for the web UI tests: signed-in clients and requests in each state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from identities.models import IdentityRequest
from identities.services import (
    identity_request_create,
    identity_request_mark_failed,
    identity_request_mark_provisioning,
)
from tests.support.people import DraftFactory
from tests.ui.support import approve, provisioned

ClientFor = Callable[..., Client]


@pytest.fixture
def client_for(db: None) -> ClientFor:
    """`client_for(user)`: a test client signed in as `user` (CSRF enforced on request)."""

    def make(user: Any, *, enforce_csrf_checks: bool = False) -> Client:
        client = Client(enforce_csrf_checks=enforce_csrf_checks)
        client.force_login(user)
        return client

    return make


@pytest.fixture
def pending_request(requester: Any, make_draft: DraftFactory) -> IdentityRequest:
    """Filed by alice (team payments), waiting for approval."""
    return identity_request_create(requester=requester, draft=make_draft())


@pytest.fixture
def other_team_request(outsider: Any, make_draft: DraftFactory) -> IdentityRequest:
    """Filed by bob for team search: invisible to the payments team."""
    return identity_request_create(
        requester=outsider,
        draft=make_draft(
            team="search",
            namespace="search",
            service_account="indexer",
            app_name="indexer",
            roles=(),
        ),
    )


@pytest.fixture
def ready_request(
    pending_request: IdentityRequest, approver: Any, django_capture_on_commit_callbacks: Any
) -> IdentityRequest:
    return provisioned(approve(pending_request, approver, django_capture_on_commit_callbacks))


@pytest.fixture
def failed_request(
    pending_request: IdentityRequest, approver: Any, django_capture_on_commit_callbacks: Any
) -> IdentityRequest:
    identity_request = approve(pending_request, approver, django_capture_on_commit_callbacks)
    identity_request_mark_provisioning(identity_request=identity_request)
    identity_request_mark_failed(
        identity_request=identity_request, error="AuthorizationFailed: the portal lacks rights"
    )
    identity_request.refresh_from_db()
    return identity_request
