"""The one seam through which the domain asks for background work, without importing a task.

Services name the work (`Work.PROVISION`) and call `enqueue` from `transaction.on_commit`; the
message goes to the Celery app by task name, so the domain depends on no worker code and the
import direction stays edges → provisioning → identities. Tests that want to see or stop the
work swap the sender with `sending_to()` instead of patching a private function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from enum import StrEnum

from celery import current_app


class Work(StrEnum):
    """Background work the domain may ask for: the value is the Celery task's registered name
    (kept as it was when the tasks had module paths for names, so queued messages still run)."""

    PROVISION = "provisioning.provision_identity_request"
    VERIFY = "provisioning.verify_identity_request"
    REPAIR = "provisioning.repair_identity"
    CHECK_IDENTITY_DRIFT = "provisioning.check_identity_drift"
    VERIFY_AUDIT_CHAIN = "identities.verify_audit_chain"
    # An overdue access review revoked an identity's role assignments (marked `removing`).
    REVOKE_ROLES = "provisioning.revoke_role_assignments"
    # An identity's tags changed (ownership transfer): write them to Azure.
    UPDATE_TAGS = "provisioning.update_identity_tags"
    DELIVER_NOTIFICATIONS = "notifications.deliver"  # args: a list of outbox keys


Sender = Callable[[Work, tuple[object, ...]], object]


def _send_to_celery(work: Work, args: tuple[object, ...]) -> object:
    # send_task publishes exactly what `task.delay(*args)` does (JSON, default queue and
    # priority, acks late per settings), looked up by name on the worker side. send_task does
    # not apply task_default_priority itself (Celery reads it into each Task's options).
    return current_app.send_task(
        str(work), args=list(args), priority=current_app.conf.task_default_priority
    )


_sender: Sender = _send_to_celery


def enqueue(work: Work, *args: object) -> None:
    """Ask a worker to do `work` with these ids. Call it on commit, never inside a transaction
    whose rollback should cancel the work."""
    _sender(work, args)


@contextlib.contextmanager
def sending_to(sender: Sender) -> Iterator[None]:
    """Route enqueued work to `sender` for the duration (tests: record it, drop it)."""
    global _sender
    previous, _sender = _sender, sender
    try:
        yield
    finally:
        _sender = previous
