"""Small helpers shared by the fault tests: seeded randomness, filing requests, bounded waits."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from identities.models import IdentityRequest, RequestStatus
from identities.policy import RoleDraft
from tests.support.people import SUBSCRIPTION
from tests.support.sandbox import ApprovedRequestFactory
from tests.support.services import ManagedProcess, wait_until

FINAL = (RequestStatus.READY, RequestStatus.FAILED)
UNFINISHED = (RequestStatus.APPROVED, RequestStatus.PROVISIONING)


def fault_seed(name: str) -> int:
    """FAULT_SEED replays a run; otherwise a fresh seed, printed so a failure can be replayed."""
    raw = os.environ.get("FAULT_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(2**32)
    # The seed must reach the test output (pytest shows it with the failure, or with -s / -rP).
    print(f"{name}: FAULT_SEED={seed}")
    return seed


def vault_roles(count: int, tag: str) -> tuple[RoleDraft, ...]:
    """`count` Key Vault roles on distinct vaults; `tag` keeps scopes apart between requests."""
    return tuple(
        RoleDraft(
            "Key Vault Secrets User",
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments"
            f"/providers/Microsoft.KeyVault/vaults/kv-{tag}-{n}",
        )
        for n in range(count)
    )


def approve_new(
    approved_request: ApprovedRequestFactory, number: int, *, roles: int
) -> IdentityRequest:
    """File and approve request `number` for its own app and ServiceAccount with `roles` roles."""
    return approved_request(
        app_name=f"app{number}",
        service_account=f"sa{number}",
        roles=vault_roles(roles, f"r{number}"),
    )


def statuses(pks: Iterable[int]) -> dict[int, str]:
    return dict(IdentityRequest.objects.filter(pk__in=list(pks)).values_list("pk", "status"))


def wait_all_final(pks: Sequence[int], *, timeout: float) -> dict[int, str]:
    """Wait (bounded) until every request is ready or failed; the statuses at the end."""
    wait_until(lambda: set(statuses(pks).values()) <= set(FINAL), timeout=timeout, interval=0.25)
    return statuses(pks)


def wait_worker_ready(worker: ManagedProcess, *, timeout: float = 60) -> None:
    """Wait until a celery worker logged that it is consuming."""
    ready = wait_until(lambda: " ready." in worker.log_tail(200), timeout=timeout, interval=0.1)
    assert ready, f"{worker.name} did not start:\n{worker.log_tail()}"


def pool_children(pid: int) -> list[int]:
    """A celery worker main process's children (its pool processes), from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children
