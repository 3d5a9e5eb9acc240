"""Recording provisioning steps (the live progress view) and running a phase's steps with
retries, their bookkeeping off the ARM round trips."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from identities.audit import audit_batch, audit_rows_deferred
from identities.models import IdentityRequest
from provisioning import metrics
from provisioning.bulk import update_rows
from provisioning.concurrency import start_concurrently
from provisioning.errors import GatewayError, TransientError
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.retry import Backoff, with_retries
from provisioning.services import records_batched


def steps_plan(*, identity_request: IdentityRequest, steps: list[tuple[str, str]]) -> None:
    """Create the pending rows of a run so the progress view shows the whole plan at once."""
    existing = set(
        ProvisioningStep.objects.filter(identity_request=identity_request).values_list(
            "key", flat=True
        )
    )
    ProvisioningStep.objects.bulk_create(
        [
            ProvisioningStep(identity_request=identity_request, key=key, label=label, position=n)
            for n, (key, label) in enumerate(steps)
            if key not in existing
        ]
    )


def steps_mark_done(*, identity_request: IdentityRequest, keys: list[str]) -> None:
    """Close steps whose write an earlier run recorded on its row (FIC or role assignment
    active, or removed) before that run died, leaving the step itself `running`."""
    if not keys:
        return
    now = timezone.now()
    ProvisioningStep.objects.filter(identity_request=identity_request, key__in=keys).exclude(
        status=StepStatus.DONE
    ).update(status=StepStatus.DONE, finished_at=now, error="", updated_at=now)


def step_is_done(*, identity_request: IdentityRequest, key: str) -> bool:
    return ProvisioningStep.objects.filter(
        identity_request=identity_request, key=key, status=StepStatus.DONE
    ).exists()


def _step_update(step_id: int, **fields: object) -> None:
    ProvisioningStep.objects.filter(pk=step_id).update(updated_at=timezone.now(), **fields)


# What a step's call returns: its result, the x-ms-request-id, and the writes that record it
# (the child row and its audit row), run by `steps_finish` in the phase's one transaction.
Outcome = tuple[Any, str, Callable[[], None]]
StepSpec = tuple[str, str, Callable[[], Outcome]]  # key, label, call


@dataclass
class _Finished:
    key: str
    at: float = 0.0
    outcome: Outcome | None = None
    error: Exception | None = None


@dataclass
class Phase:
    """Steps whose Azure calls are in flight on the engine's pool (see `steps_start`)."""

    identity_request: IdentityRequest
    steps: Sequence[StepSpec]
    futures: list[Future[_Finished]]

    def succeeded(self) -> bool:
        """Wait for every call (not for their records); True if all of them succeeded."""
        return all(future.result().outcome is not None for future in self.futures)


def _step_rows(identity_request: IdentityRequest, steps: Sequence[StepSpec]) -> list[int]:
    """The steps' row ids, in the order given: one read (steps_plan normally made them), a write
    only for a row that is missing."""
    keys = [key for key, _label, _call in steps]
    rows = dict(
        ProvisioningStep.objects.filter(
            identity_request=identity_request, key__in=keys
        ).values_list("key", "pk")
    )
    for key, label, _call in steps:
        if key not in rows:
            with transaction.atomic():
                row, _ = ProvisioningStep.objects.get_or_create(
                    identity_request=identity_request, key=key, defaults={"label": label}
                )
            rows[key] = row.pk
    return [rows[key] for key in keys]


def steps_start(
    *,
    identity_request: IdentityRequest,
    steps: Sequence[StepSpec],
    backoff: Backoff | None = None,
) -> Phase:
    """Send a phase's Azure calls at once on the engine's pool and return while they are in
    flight, so the caller does its bookkeeping meanwhile. Each call is retried with backoff,
    every retry counted on its step's row; `steps_finish` records the outcomes."""
    backoff = backoff or Backoff.from_settings()

    def attempt(key: str, call: Callable[[], Outcome]) -> _Finished:
        def on_retry(_attempt: int, error: TransientError) -> None:
            ProvisioningStep.objects.filter(identity_request=identity_request, key=key).update(
                attempts=F("attempts") + 1,
                error=f"retrying: {error.describe()}",
                updated_at=timezone.now(),
            )

        finished = _Finished(key=key)
        try:
            finished.outcome = with_retries(call, backoff=backoff, on_retry=on_retry)
        except Exception as error:  # recorded by steps_finish; anything but a GatewayError raised
            finished.error = error
        finished.at = time.monotonic()
        return finished

    futures = start_concurrently(
        [functools.partial(attempt, key, call) for key, _label, call in steps]
    )
    return Phase(identity_request=identity_request, steps=steps, futures=futures)


def steps_finish(phase: Phase, then: Callable[[], None] | None = None) -> list[GatewayError]:
    """Mark the phase's steps running (their calls are in flight), wait for every answer, then
    record them all in one transaction; return the gateway errors the calls raised. `then`
    runs last in that transaction when every call succeeded (the run's last phase: the
    request becomes ready in the commit that records its last writes).

    That transaction closes every row (done with its request id, or failed with the error: one
    statement) and runs the successes' records in the order Azure answered, inside one audit
    batch: their audit rows are appended under one acquisition of the chain's lock. A run
    killed before that commit recorded nothing of the phase: the rerun writes the same named
    resources again (idempotent PUT/DELETE) and records them then, as a kill between an answer
    and its record always did.
    """
    if not phase.steps:
        return []
    ids = _step_rows(phase.identity_request, phase.steps)
    now = timezone.now()
    # Not a step another run of the request already closed as done: a duplicate run (a
    # redelivery, the sweeper) that loses the database before its record commits would leave
    # it running under a ready request, since its retry finds nothing left to do.
    ProvisioningStep.objects.filter(pk__in=ids).exclude(status=StepStatus.DONE).update(
        status=StepStatus.RUNNING,
        started_at=now,
        finished_at=None,
        error="",
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    by_key = {key: pk for (key, _label, _call), pk in zip(phase.steps, ids, strict=True)}
    finished = sorted((future.result() for future in phase.futures), key=lambda f: f.at)
    errors = [f.error for f in finished if isinstance(f.error, GatewayError)]
    unexpected = next(
        (f.error for f in finished if f.error and not isinstance(f.error, GatewayError)), None
    )
    now = timezone.now()
    closed: dict[int, dict[str, Any]] = {}
    for done in finished:
        if done.outcome is not None:
            fields = {"status": StepStatus.DONE, "error": "", "azure_request_id": done.outcome[1]}
        elif isinstance(done.error, GatewayError):
            fields = {
                "status": StepStatus.FAILED,
                "error": done.error.describe(),
                "azure_request_id": done.error.request_id,
            }
        else:
            continue
        closed[by_key[done.key]] = {**fields, "finished_at": now, "updated_at": now}
    with audit_batch():
        update_rows(ProvisioningStep, closed)
        # Every audit row of the transaction, `then`'s too, in one INSERT when it ends.
        with audit_rows_deferred():
            with records_batched():  # the child rows' updates, together
                for done in finished:
                    if done.outcome is not None:
                        done.outcome[2]()  # the record: child row, then its audit row
            if then is not None and not errors and unexpected is None:
                then()
    for done in finished:
        if done.outcome is not None or isinstance(done.error, GatewayError):
            metrics.step_finished(key=done.key, outcome="done" if done.outcome else "failed")
    if unexpected is not None:
        raise unexpected
    return errors


def run_steps(
    *,
    identity_request: IdentityRequest,
    steps: Sequence[StepSpec],
    backoff: Backoff | None = None,
) -> list[GatewayError]:
    """Run a phase's steps at once (`steps_start`, then `steps_finish`)."""
    return steps_finish(
        steps_start(identity_request=identity_request, steps=steps, backoff=backoff)
    )
