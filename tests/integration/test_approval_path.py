"""The path of an approval through the code, hop by hop, as docs/architecture.md lists it.

Each hop is called (or observed) in order, with nothing patched: the web view approves through
the service; the service asks for work through the seam; the seam's name is the registered task;
the task runs the engine; the engine's first Azure call is the identity PUT, over HTTPS to the
emulator. If a hop is renamed or moved, this test and the document change together.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from identities.models import RequestStatus
from identities.work import Work
from portal.celery import app as celery_app
from provisioning import tasks
from tests.support.people import DraftFactory
from tests.support.sandbox import Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_an_approval_reaches_azure_through_the_six_documented_hops(
    sandbox: Sandbox,
    requester: Any,
    approver: Any,
    make_draft: DraftFactory,
    work_sent: list[tuple[Work, tuple[object, ...]]],
    settings: Any,
) -> None:
    from identities.services import identity_request_create

    settings.VERIFY_AFTER_PROVISIONING = False
    identity_request = identity_request_create(requester=requester, draft=make_draft())
    web = Client()
    web.force_login(approver)

    # 1. web.views.approvals.request_approve -> 2. identities.services.identity_request_approve
    response = web.post(reverse("request_approve", args=[identity_request.pk]), {"comment": "ok"})
    assert response.status_code == 302
    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.APPROVED

    # 3. identities.work.enqueue(Work.PROVISION, id), on commit: the domain names the work.
    # The approval also writes notifications (delivered by their own work); provisioning is
    # asked for exactly once.
    assert [sent for sent in work_sent if sent[0] == Work.PROVISION] == [
        (Work.PROVISION, (identity_request.pk,))
    ]

    # 4. The name is the registered task provisioning.tasks.provision_identity_request.
    registered = celery_app.tasks[str(Work.PROVISION)]
    assert registered.name == tasks.provision_identity_request.name
    log_start = len(sandbox.emulator.requests())

    # 5. The task runs provisioning.reconcile.reconcile_request (what a worker would do).
    registered.run(identity_request.pk)

    # 6. The first Azure call is AzureGateway.ensure_identity: a PUT of the managed identity.
    arm_calls = [
        entry
        for entry in sandbox.emulator.requests(log_start)
        if "/providers/Microsoft." in entry["path"]
    ]
    assert arm_calls[0]["method"] == "PUT"
    assert "/Microsoft.ManagedIdentity/userAssignedIdentities/" in arm_calls[0]["path"]
    identity_request.refresh_from_db()
    assert identity_request.status == RequestStatus.READY, identity_request.last_error


def test_every_kind_of_work_the_domain_names_is_a_registered_task() -> None:
    # What a worker does at start: import every installed app's tasks module (autodiscovery).
    # The first call in a process also sends Celery's import_modules signal, on which its Django
    # fixup runs django.setup() again: that reapplies settings.LOGGING and drops every handler
    # the root logger has, the session's log capture (tests/support/log_capture.py) included.
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        celery_app.loader.import_default_modules()
    finally:
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
    assert {str(work) for work in Work} <= set(celery_app.tasks)
