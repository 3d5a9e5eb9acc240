"""Recording provisioning steps (the live progress view) and running one step with retries."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import transaction
from django.utils import timezone

from identities.models import IdentityRequest
from provisioning import metrics
from provisioning.errors import GatewayError, TransientError
from provisioning.models import ProvisioningStep, StepStatus
from provisioning.retry import Backoff, with_retries

T = TypeVar("T")


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


def run_step(
    *,
    identity_request: IdentityRequest,
    key: str,
    label: str,
    operation: Callable[[], tuple[T, str]],
    backoff: Backoff | None = None,
) -> T:
    """Run `operation` (returning (result, azure request id)) as a recorded, retried step.

    The row goes running → done, or failed with the error; transient errors are retried with
    backoff and every attempt is counted on the row.
    """
    # steps_plan normally created the row already: read first, write only when it is missing.
    step = ProvisioningStep.objects.filter(identity_request=identity_request, key=key).first()
    if step is None:
        with transaction.atomic():
            step, _ = ProvisioningStep.objects.get_or_create(
                identity_request=identity_request, key=key, defaults={"label": label}
            )
    now = timezone.now()
    _step_update(
        step.pk,
        status=StepStatus.RUNNING,
        started_at=now,
        finished_at=None,
        error="",
        attempts=step.attempts + 1,
    )
    attempts = step.attempts + 1

    def on_retry(_attempt: int, error: TransientError) -> None:
        nonlocal attempts
        attempts += 1
        _step_update(step.pk, attempts=attempts, error=f"retrying: {error.describe()}")

    try:
        result, request_id = with_retries(
            operation, backoff=backoff or Backoff.from_settings(), on_retry=on_retry
        )
    except GatewayError as error:
        _step_update(
            step.pk,
            status=StepStatus.FAILED,
            finished_at=timezone.now(),
            error=error.describe(),
            azure_request_id=error.request_id,
        )
        metrics.step_finished(key=key, outcome="failed")
        raise
    _step_update(
        step.pk,
        status=StepStatus.DONE,
        finished_at=timezone.now(),
        error="",
        azure_request_id=request_id,
    )
    metrics.step_finished(key=key, outcome="done")
    return result
