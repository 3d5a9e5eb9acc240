"""Recording provisioning steps (the live progress view) and running a phase's steps with
retries, their bookkeeping off the ARM round trips."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from identities.models import IdentityRequest
from provisioning import metrics
from provisioning.concurrency import start_concurrently
from provisioning.errors import GatewayError, TransientError
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.retry import Backoff, with_retries


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
# (the child row and its audit row), run by `run_steps` in the phase's one transaction.
Outcome = tuple[Any, str, Callable[[], None]]


@dataclass
class _Finished:
    step: ProvisioningStep
    key: str
    at: float
    outcome: Outcome | None = None
    error: BaseException | None = None


def _step_rows(
    identity_request: IdentityRequest, steps: Sequence[tuple[str, str, Callable[[], Outcome]]]
) -> list[ProvisioningStep]:
    """The steps' rows, in the order given: one read (steps_plan normally made them), a write
    only for a row that is missing."""
    keys = [key for key, _label, _call in steps]
    rows = {
        row.key: row
        for row in ProvisioningStep.objects.filter(identity_request=identity_request, key__in=keys)
    }
    for key, label, _call in steps:
        if key not in rows:
            with transaction.atomic():
                rows[key], _ = ProvisioningStep.objects.get_or_create(
                    identity_request=identity_request, key=key, defaults={"label": label}
                )
    return [rows[key] for key in keys]


def run_steps(
    *,
    identity_request: IdentityRequest,
    steps: Sequence[tuple[str, str, Callable[[], Outcome]]],
    backoff: Backoff | None = None,
) -> list[GatewayError]:
    """Run a phase's steps (key, label, call) at once; return the gateway errors they raised.

    Each call makes its Azure write (retried with backoff, every attempt counted on its row) on
    the engine's pool and returns its `Outcome`. The bookkeeping stays off the ARM round trips:
    the rows go `running` while the calls are in flight, and once all have answered, one
    transaction closes every row (done with its request id, or failed with the error) and runs
    the successes' records in the order Azure answered, so their audit rows are appended under
    one acquisition of the chain's lock. A run killed before that commit recorded nothing of the
    phase: the rerun writes the same named resources again (idempotent PUT/DELETE) and records
    them then, as a kill between an answer and its record always did.
    """
    if not steps:
        return []
    backoff = backoff or Backoff.from_settings()
    rows = _step_rows(identity_request, steps)

    def attempt(row: ProvisioningStep, key: str, call: Callable[[], Outcome]) -> _Finished:
        def on_retry(_attempt: int, error: TransientError) -> None:
            _step_update(row.pk, attempts=F("attempts") + 1, error=f"retrying: {error.describe()}")

        finished = _Finished(step=row, key=key, at=0.0)
        try:
            finished.outcome = with_retries(call, backoff=backoff, on_retry=on_retry)
        except Exception as error:  # recorded below; anything but a GatewayError re-raised
            finished.error = error
        finished.at = time.monotonic()
        return finished

    futures = start_concurrently(
        [
            functools.partial(attempt, row, key, call)
            for row, (key, _label, call) in zip(rows, steps, strict=True)
        ]
    )
    now = timezone.now()
    ProvisioningStep.objects.filter(pk__in=[row.pk for row in rows]).update(
        status=StepStatus.RUNNING,
        started_at=now,
        finished_at=None,
        error="",
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    finished = sorted((future.result() for future in futures), key=lambda f: f.at)
    errors: list[GatewayError] = []
    unexpected: BaseException | None = None
    with transaction.atomic():
        now = timezone.now()
        for done in finished:
            if done.outcome is not None:
                _result, request_id, record = done.outcome
                _step_update(
                    done.step.pk,
                    status=StepStatus.DONE,
                    finished_at=now,
                    error="",
                    azure_request_id=request_id,
                )
                record()
            elif isinstance(done.error, GatewayError):
                errors.append(done.error)
                _step_update(
                    done.step.pk,
                    status=StepStatus.FAILED,
                    finished_at=now,
                    error=done.error.describe(),
                    azure_request_id=done.error.request_id,
                )
            else:
                unexpected = unexpected or done.error
    for done in finished:
        outcome = "done" if done.outcome is not None else "failed"
        if done.outcome is not None or isinstance(done.error, GatewayError):
            metrics.step_finished(key=done.key, outcome=outcome)
    if unexpected is not None:
        raise unexpected
    return errors
