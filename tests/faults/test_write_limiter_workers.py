"""Two subscriptions, one of whose ARM write buckets is empty: a real worker process provisions
the other's request without waiting for the empty one (issue 18, goal 2).

The emulator meters writes per subscription in small buckets (3 writes, refilled at 0.25/s) and
the worker's write limiter is told the same sizes. The busy subscription's bucket is emptied
before its two requests are approved, then the other subscription's request is approved behind
them in the one queue, and a worker with a single pool process starts. Before the limiter, the
busy requests held that process while they slept out ARM's Retry-After, so the other request
waited for both; now they are sent again with a countdown and the other goes first. Every
request still ends ready with its steps and audit rows, and the chain verifies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.test import override_settings

from identities.audit.actions import AuditAction
from identities.audit.chain import audit_verify_chain
from identities.models import (
    AuditEvent,
    Cluster,
    IdentityRequest,
    NamespaceOwnership,
    RequestStatus,
    ResourceGroupOwnership,
    Team,
)
from identities.policy import RoleDraft
from identities.work import Work, enqueue, sending_to
from provisioning.azure import get_gateway
from provisioning.ratelimit import forget_buckets, write_buckets
from tests.faults.consistency import ready_request_disagreements
from tests.faults.helpers import wait_all_final, wait_worker_ready
from tests.support.people import OTHER_SUBSCRIPTION, SUBSCRIPTION, ClusterFactory
from tests.support.sandbox import AKS_RESOURCE_GROUP, ApprovedRequestFactory, Sandbox
from tests.support.services import ManagedProcess, postgres_or_missing
from tests.support.workers import Broker, WorkerFactory, make_broker

pytestmark = [
    pytest.mark.fault,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

CAPACITY = 3
REFILL = 0.25  # a token every 4 s: ARM's Retry-After for an empty bucket is 4 s
LIMITER = {
    "PROVISIONING_WRITE_BUCKET_CAPACITY": CAPACITY,
    "PROVISIONING_WRITE_REFILL_PER_SECOND": REFILL,
}


@pytest.fixture
def limiter_buckets(sandbox: Sandbox) -> Iterator[None]:
    """This test's limiter sizes, in this process and fresh in Redis (before and after)."""
    from django.conf import settings

    def forget() -> None:
        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match="wip:arm-bucket:*"))
        if keys:
            client.delete(*keys)

    if not settings.REDIS_URL or settings.PROVISIONING_WRITE_LIMITER != "redis":
        pytest.skip("the shared write limiter needs REDIS_URL")
    forget()
    with override_settings(**LIMITER):
        yield
    forget()


def other_subscription_cluster(sandbox: Sandbox, team: Team) -> Cluster:
    """A second sandbox cluster, its identities and role scopes in OTHER_SUBSCRIPTION."""
    cluster = ClusterFactory(
        name="aks-other",
        subscription_id=OTHER_SUBSCRIPTION,
        allowed_scope_subscriptions=[OTHER_SUBSCRIPTION],
    )
    NamespaceOwnership.objects.get_or_create(
        cluster=cluster, namespace="payments", defaults={"team": team}
    )
    ResourceGroupOwnership.objects.get_or_create(
        subscription_id=OTHER_SUBSCRIPTION, resource_group="rg-payments", defaults={"team": team}
    )
    aks = sandbox.emulator.register_cluster(
        subscription_id=OTHER_SUBSCRIPTION,
        resource_group=AKS_RESOURCE_GROUP,
        name=cluster.name,
        location=cluster.location,
    )
    Cluster.objects.filter(pk=cluster.pk).update(
        oidc_issuer_url=aks["issuer_url"],
        cluster_resource_group=AKS_RESOURCE_GROUP,
        emulated=True,
    )
    cluster.refresh_from_db()
    return cluster


def vault(subscription: str, name: str) -> RoleDraft:
    return RoleDraft(
        "Key Vault Secrets User",
        f"/subscriptions/{subscription}/resourceGroups/rg-payments"
        f"/providers/Microsoft.KeyVault/vaults/{name}",
    )


def empty_the_bucket(subscription: str) -> None:
    """Spend the subscription's writes in ARM (and so, through ARM's remaining count, in the
    limiter's copy) with writes of identities nobody asked for."""
    gateway = get_gateway()
    for n in range(CAPACITY):
        gateway.ensure_identity(
            subscription_id=subscription,
            resource_group="rg-identities",
            name=f"id-drain-{n}",
            location="westeurope",
            tags={},
        )


def ready_order(pks: list[int]) -> list[int]:
    return list(
        AuditEvent.objects.filter(identity_request_id__in=pks, action=AuditAction.REQUEST_READY)
        .order_by("id")
        .values_list("identity_request_id", flat=True)
    )


def test_a_subscription_with_an_empty_bucket_does_not_hold_up_another(
    sandbox: Sandbox,
    team: Team,
    approved_request: ApprovedRequestFactory,
    limiter_buckets: None,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    postgres_or_missing()
    broker = make_broker("redis", tmp_path)
    use_broker(broker)
    other = other_subscription_cluster(sandbox, team)
    sandbox.emulator.config(write_bucket_capacity=CAPACITY, write_bucket_refill_per_second=REFILL)

    busy = [
        approved_request(
            app_name=f"busy{n}",
            service_account=f"busy{n}",
            roles=(vault(SUBSCRIPTION, f"kv-b{n}"),),
        ).pk
        for n in range(2)
    ]
    free = approved_request(
        cluster=other.name,
        app_name="free",
        service_account="free",
        roles=(vault(OTHER_SUBSCRIPTION, "kv-free"),),
    ).pk
    # All three are queued, busy ones first; the busy bucket is emptied just before the one
    # worker process starts.
    empty_the_bucket(SUBSCRIPTION)
    worker: ManagedProcess = start_worker(
        broker,
        concurrency=1,
        **sandbox.worker_env,
        VERIFY_AFTER_PROVISIONING="0",
        **{name: str(value) for name, value in LIMITER.items()},
    )
    wait_worker_ready(worker)

    final = wait_all_final([*busy, free], timeout=120)
    context = f"{final}\n{worker.log_tail(80)}"
    assert set(final.values()) == {RequestStatus.READY}, context
    # The free subscription's request was ready before either busy one.
    assert ready_order([*busy, free])[0] == free, context
    # The busy ones were sent again rather than slept on, and its writes were never refused.
    assert "running again in" in worker.log_tail(400), context
    other_writes = [
        entry
        for entry in sandbox.arm_writes()
        if f"/subscriptions/{OTHER_SUBSCRIPTION}/" in entry["path"]
    ]
    assert other_writes
    assert all(entry["status"] < 400 for entry in other_writes), other_writes

    problems: list[str] = []
    for identity_request in IdentityRequest.objects.filter(pk__in=[*busy, free]):
        problems += ready_request_disagreements(identity_request)
        writes = AuditEvent.objects.filter(
            identity_request=identity_request, data__azure_request_id__isnull=False
        )
        # Every Azure write (identity, FIC, role) is on the trail with its request id.
        if writes.count() != 3:
            problems.append(f"request {identity_request.pk}: {writes.count()} audited writes")
    assert problems == [], context + "\n" + "\n".join(problems)
    assert audit_verify_chain().ok


def test_a_deferred_run_comes_back_ahead_of_the_queue_it_was_sent_behind(
    sandbox: Sandbox,
    team: Team,
    approved_request: ApprovedRequestFactory,
    start_worker: WorkerFactory,
    use_broker: Callable[[Broker], None],
    tmp_path: Path,
) -> None:
    """A run deferred for ARM's write budget is sent again at the top priority: a worker
    receives it at once and runs it when its tokens are due, not once the queue that was in
    front of it has drained (which is how it was: its countdown ran out while it waited in the
    broker's list, and the subscription's tokens went unused meanwhile)."""
    from django.conf import settings

    postgres_or_missing()
    if not settings.REDIS_URL or settings.PROVISIONING_WRITE_LIMITER != "redis":
        pytest.skip("the shared write limiter needs REDIS_URL")
    broker = make_broker("redis", tmp_path)
    use_broker(broker)
    other = other_subscription_cluster(sandbox, team)
    # Approved now, sent to the broker later, all at once: the busy one first, 30 behind it.
    held: list[tuple[Work, tuple[object, ...]]] = []
    with sending_to(lambda work, args: held.append((work, args))):
        approved_request(
            app_name="busy", service_account="busy", roles=(vault(SUBSCRIPTION, "kv-busy"),)
        )
        for n in range(30):
            approved_request(
                cluster=other.name,
                app_name=f"queued{n}",
                service_account=f"queued{n}",
                roles=(vault(OTHER_SUBSCRIPTION, f"kv-q{n}"),),
            )
    ids = [int(str(args[0])) for work, args in held if work == Work.PROVISION]
    busy, queue = ids[0], ids[1:]
    assert len(queue) == 30
    worker: ManagedProcess = start_worker(
        broker, concurrency=1, **sandbox.worker_env, VERIFY_AFTER_PROVISIONING="0"
    )
    wait_worker_ready(worker)
    # The busy subscription's bucket is held (as by ARM's Retry-After) for 2 s: more than a
    # run waits inline (1 s), so its run is deferred, and much less than the one pool process
    # needs for the 30 behind it; the other subscription's runs are not held.
    forget_buckets()
    buckets = write_buckets()
    assert buckets is not None
    try:
        buckets.hold(
            f"writes:{SUBSCRIPTION}", 2.0, capacity=settings.PROVISIONING_WRITE_BUCKET_CAPACITY
        )
        for work, args in held:
            enqueue(work, *args)
        final = wait_all_final(ids, timeout=180)
    finally:
        forget_buckets()
    context = f"{final}\n{worker.log_tail(80)}"
    assert set(final.values()) == {RequestStatus.READY}, context
    assert f"request {busy}: ARM writes" in worker.log_tail(2000), context
    order = ready_order(ids)
    # Sent again behind 30 queued requests, it was ready well before the last of them.
    assert order.index(busy) < len(order) - 5, (order.index(busy), context)
