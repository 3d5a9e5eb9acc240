"""Helpers for the domain tests: filing requests and reading the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from identities.models import AuditEvent, IdentityRequest
from identities.services import identity_request_approve, identity_request_create
from tests.support.people import DraftFactory

FileRequest = Callable[..., IdentityRequest]


@pytest.fixture
def file_request(requester: Any, make_draft: DraftFactory) -> FileRequest:
    """File a request as `requester` (or `as_user=`), with draft overrides."""

    def file(*, as_user: Any = None, **overrides: Any) -> IdentityRequest:
        return identity_request_create(
            requester=as_user or requester, draft=make_draft(**overrides)
        )

    return file


@pytest.fixture
def pending_request(file_request: FileRequest) -> IdentityRequest:
    return file_request()


@pytest.fixture
def approved_request(
    pending_request: IdentityRequest, approver: Any, django_capture_on_commit_callbacks: Any
) -> IdentityRequest:
    with django_capture_on_commit_callbacks(execute=False):
        return identity_request_approve(identity_request=pending_request, approver=approver)


def audit_actions(**filters: Any) -> list[str]:
    return list(
        AuditEvent.objects.filter(**filters).order_by("id").values_list("action", flat=True)
    )


def last_audit() -> AuditEvent:
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None, "no audit rows at all"
    return event
