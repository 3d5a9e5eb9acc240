"""Drift: compare each ready identity with Azure, record what differs; repair reruns reconcile.

Drift is: the identity gone, a federated credential missing or changed, a role assignment
missing, or a role assignment on the principal that the portal did not make (privilege creep).
Repair restores what is missing or changed and removes role assignments made outside the portal:
for the identities it manages the portal is the source of truth.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from identities.audit import audit_record
from identities.audit.actions import AuditAction
from identities.models import (
    CatalogRole,
    ChildStatus,
    DriftState,
    Identity,
    IdentityRequest,
    NotificationEvent,
    RequestKind,
)
from identities.services import notifications_record
from provisioning import metrics, reconcile
from provisioning.azure import (
    AzureGateway,
    FicState,
    IdentityState,
    RoleAssignmentState,
    get_gateway,
    subscription_of,
)
from provisioning.errors import GatewayError, TransientError
from provisioning.models import DriftRun
from provisioning.ratelimit import LocalBuckets, url_subscription
from provisioning.retry import THROTTLED

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _scopes_to_search(identity: Identity) -> set[str]:
    """Subscriptions where the principal may hold assignments (filter covers at/above/below)."""
    subscriptions = {identity.subscription_id.lower()}
    for scope in identity.role_assignments.values_list("scope", flat=True):
        subscriptions.add(subscription_of(scope).lower())
    return {f"/subscriptions/{subscription}" for subscription in subscriptions}


def find_drift(identity: Identity, gateway: AzureGateway) -> list[dict[str, Any]]:
    """What differs between the database and Azure, as a list of findings (empty: in sync)."""
    findings: list[dict[str, Any]] = []
    state = gateway.get_identity(
        subscription_id=identity.subscription_id,
        resource_group=identity.resource_group,
        name=identity.name,
    )
    if state is None:
        return [{"kind": "identity_missing", "detail": f"{identity.name} no longer exists"}]
    if state.principal_id.lower() != identity.principal_id.lower():
        findings.append(
            {
                "kind": "identity_replaced",
                "detail": "the identity was deleted and recreated: it has a new principal id "
                f"({state.principal_id}); role assignments of the old one are lost",
            }
        )
    azure_fics = {
        fic.name.lower(): fic
        for fic in gateway.list_fics(
            subscription_id=identity.subscription_id,
            resource_group=identity.resource_group,
            identity_name=identity.name,
        )
    }
    for fic in identity.federated_credentials.filter(status=ChildStatus.ACTIVE):
        found = azure_fics.get(fic.name.lower())
        if found is None:
            findings.append({"kind": "fic_missing", "detail": f"{fic.name} ({fic.subject})"})
        elif (found.issuer, found.subject, found.audiences) != (
            fic.issuer,
            fic.subject,
            (fic.audience,),
        ):
            findings.append(
                {
                    "kind": "fic_changed",
                    "detail": f"{fic.name}: expected {fic.issuer} / {fic.subject}, "
                    f"found {found.issuer} / {found.subject}",
                }
            )
    expected = {
        (ra.scope.lower(), ra.role.role_definition_guid.lower()): ra
        for ra in identity.role_assignments.filter(status=ChildStatus.ACTIVE).select_related("role")
    }
    actual = {}
    for scope in _scopes_to_search(identity):
        for assignment in gateway.list_role_assignments_for_principal(
            scope=scope, principal_id=identity.principal_id
        ):
            actual[(assignment.scope.lower(), assignment.role_definition_guid)] = assignment
    for key, ra in expected.items():
        if key not in actual:
            findings.append(
                {"kind": "role_assignment_missing", "detail": f"{ra.role.name} on {ra.scope}"}
            )
    role_names = dict(CatalogRole.objects.values_list("role_definition_guid", "name"))
    for key, assignment in actual.items():
        if key not in expected:
            role = role_names.get(assignment.role_definition_guid, assignment.role_definition_guid)
            if not assignment.scope.lower().startswith("/subscriptions/"):
                # `principalId eq` lists assignments "at, above or below" the scope (the
                # 2022-04-01 spec's RoleAssignmentFilter): a management group's or the tenant
                # root's is found too. Drift all the same, but not the portal's to remove.
                findings.append(
                    {
                        "kind": "role_assignment_extra_above",
                        "detail": f"{role} on {assignment.scope} was granted outside the portal, "
                        "above any subscription: the portal does not remove assignments there; "
                        "an administrator of that scope must",
                        "scope": assignment.scope,
                        "name": assignment.name,
                    }
                )
                continue
            findings.append(
                {
                    "kind": "role_assignment_extra",
                    "detail": f"{role} on {assignment.scope} was granted outside the portal",
                    "scope": assignment.scope,
                    "name": assignment.name,
                }
            )
    return findings


@transaction.atomic
def _record_drift(identity: Identity, findings: list[dict[str, Any]]) -> None:
    new_state = DriftState.DRIFTED if findings else DriftState.IN_SYNC
    previous = Identity.objects.select_for_update(no_key=True).get(pk=identity.pk)
    Identity.objects.filter(pk=identity.pk).update(
        drift_state=new_state,
        drift_details={"findings": findings},
        drift_checked_at=timezone.now(),
    )
    # An audit row when the drift state or findings change, not on every scheduled check.
    if previous.drift_state != new_state or previous.drift_details.get("findings") != findings:
        recorded = audit_record(
            actor=None,
            action=AuditAction.IDENTITY_DRIFT_DETECTED
            if findings
            else AuditAction.IDENTITY_DRIFT_CLEARED,
            identity=identity,
            data={"from": previous.drift_state, "to": new_state, "findings": findings},
        )
        if findings:
            notifications_record(
                event=NotificationEvent.DRIFT_DETECTED,
                occurrence=recorded,
                identity=identity,
                data={"findings": findings},
            )


def identity_check_drift(*, identity: Identity, gateway: AzureGateway | None = None) -> list[Any]:
    """Compare one ready identity with Azure and record the result."""
    findings = find_drift(identity, gateway or get_gateway())
    _record_drift(identity, findings)
    metrics.drift_recorded(
        result="drifted" if findings else "in_sync", finding_kinds=[f["kind"] for f in findings]
    )
    return findings


class ReadsThrottled(Exception):
    """ARM asked for a wait longer than a batch should sleep: hand the run on with a countdown."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"ARM reads throttled for {retry_after:.0f}s")
        self.retry_after = retry_after


class ReadPacer:
    """A client-side token bucket per subscription for ARM reads, refilled at `rate` per second.

    ARM meters reads per subscription and principal in a bucket of 250 refilled at 25/s (Learn
    "Understand how Azure Resource Manager throttles requests", request-limits-and-throttling.md,
    "Regional throttling and token bucket algorithm"). Drift reads at the refill rate, from a
    small burst, so it never empties ARM's bucket; when an answer's
    x-ms-ratelimit-remaining-subscription-reads says other readers left fewer than `reserve`
    tokens, it waits for them to come back; a 429's Retry-After holds that subscription.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        reserve: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.reserve = reserve
        self._sleep = sleep
        # The bucket arithmetic is the write limiter's (provisioning.ratelimit), kept here in
        # this process: one drift batch reads at a time per worker.
        self._buckets = LocalBuckets(clock)

    def acquire(self, subscription: str) -> float:
        """Take one token for `subscription`, sleeping until it is due; returns the wait."""
        _granted, wait = self._buckets.take(
            subscription.lower(), capacity=self.burst, refill=self.rate, cost=1, max_wait=math.inf
        )
        if wait > 0:
            self._sleep(wait)
        return wait

    def hold(self, subscription: str, seconds: float) -> None:
        """No read of `subscription` for `seconds` (a Retry-After, or a low remaining count)."""
        self._buckets.hold(subscription.lower(), seconds, capacity=self.burst)

    def observe(self, subscription: str, remaining: int) -> None:
        """ARM's remaining read count for `subscription`: below the reserve, wait for refill."""
        if remaining < self.reserve:
            self.hold(subscription, (self.reserve - remaining) / self.rate)


class PacedReads(AzureGateway):
    """The gateway drift reads through: every read paced (ReadPacer) and counted, 429s waited
    out up to DRIFT_MAX_INLINE_WAIT_SECONDS (longer waits raise ReadsThrottled)."""

    def __init__(self, base: AzureGateway, pacer: ReadPacer) -> None:
        hooks = dict(base.client_kwargs)
        inner = hooks.get("raw_response_hook")

        def on_response(pipeline_response: Any) -> None:
            if inner is not None:
                inner(pipeline_response)
            self._observe(pipeline_response)

        hooks["raw_response_hook"] = on_response
        super().__init__(
            credential=base.credential,
            arm_url=base.arm_url,
            authority=base.authority,
            arm_scope=base.arm_scope,
            connection_verify=base.connection_verify,
            client_kwargs=hooks,
        )
        self.pacer = pacer
        self.reads = 0
        self.throttled = 0

    def _observe(self, pipeline_response: Any) -> None:
        request = pipeline_response.http_request
        if request.method != "GET":
            return
        self.reads += 1
        response = pipeline_response.http_response
        if response.status_code == THROTTLED:
            self.throttled += 1
        remaining = response.headers.get("x-ms-ratelimit-remaining-subscription-reads")
        subscription = url_subscription(request.url)
        if remaining is not None and subscription:
            with contextlib.suppress(ValueError):
                self.pacer.observe(subscription, int(remaining))

    def _paced(self, subscription: str, read: Callable[[], T]) -> T:
        while True:
            self.pacer.acquire(subscription)
            try:
                return read()
            except TransientError as error:
                if error.status != THROTTLED:
                    raise
                wait = error.retry_after if error.retry_after is not None else 1.0
                if wait > settings.DRIFT_MAX_INLINE_WAIT_SECONDS:
                    raise ReadsThrottled(wait) from error
                self.pacer.hold(subscription, wait)

    def get_identity(
        self, *, subscription_id: str, resource_group: str, name: str
    ) -> IdentityState | None:
        return self._paced(
            subscription_id,
            lambda: super(PacedReads, self).get_identity(
                subscription_id=subscription_id, resource_group=resource_group, name=name
            ),
        )

    def list_fics(
        self, *, subscription_id: str, resource_group: str, identity_name: str
    ) -> list[FicState]:
        return self._paced(
            subscription_id,
            lambda: super(PacedReads, self).list_fics(
                subscription_id=subscription_id,
                resource_group=resource_group,
                identity_name=identity_name,
            ),
        )

    def list_role_assignments_for_principal(
        self, *, scope: str, principal_id: str
    ) -> list[RoleAssignmentState]:
        # One list call per subscription with $filter=principalId eq '…' (at, above and below
        # the scope), never a GET per assignment.
        return self._paced(
            subscription_of(scope),
            lambda: super(PacedReads, self).list_role_assignments_for_principal(
                scope=scope, principal_id=principal_id
            ),
        )


_pacers: dict[tuple[float, float, int], ReadPacer] = {}


def _pacer() -> ReadPacer:
    """The process's pacer: one batch after another in a worker share its buckets (a new
    process starts from a burst of DRIFT_READ_BURST, well inside ARM's 250)."""
    key = (
        settings.DRIFT_READS_PER_SECOND,
        settings.DRIFT_READ_BURST,
        settings.DRIFT_READS_RESERVE,
    )
    if key not in _pacers:
        _pacers[key] = ReadPacer(rate=key[0], burst=key[1], reserve=key[2])
    return _pacers[key]


EnqueueBatch = Callable[[int, str, float], None]


def run_tick(*, enqueue_batch: EnqueueBatch) -> dict[str, Any]:
    """Scheduled every DRIFT_TICK_SECONDS: start a run once DRIFT_CHECK_INTERVAL_SECONDS have
    passed since the last one started (never while one is active: a run that outlasts its
    interval goes on, and the next starts when it ends), or hand a stalled run's next batch out
    again (its worker died, or the message was lost) from the persisted cursor."""
    now = timezone.now()
    lease = timedelta(seconds=settings.DRIFT_LEASE_SECONDS)
    run = DriftRun.objects.filter(active=True).first()
    if run is None:
        last = DriftRun.objects.order_by("-started_at").first()
        interval = timedelta(seconds=settings.DRIFT_CHECK_INTERVAL_SECONDS)
        if last is not None and last.started_at + interval > now:
            return {"status": "idle", "run": last.pk}
        ticket = uuid.uuid4().hex
        try:
            with transaction.atomic():
                run = DriftRun.objects.create(
                    started_at=now,
                    total=Identity.objects.filter(status=Identity.Status.READY).count(),
                    lease_token=ticket,
                    lease_until=now + lease,
                )
        except IntegrityError:  # another tick started one a moment ago
            return {"status": "running"}
        logger.info("drift run %d started over %d identities", run.pk, run.total)
        enqueue_batch(run.pk, ticket, 0.0)
        return {"status": "started", "run": run.pk}
    if run.lease_until is not None and run.lease_until >= now:
        return {"status": "running", "run": run.pk, "cursor": run.cursor}
    ticket = uuid.uuid4().hex
    resumed = DriftRun.objects.filter(pk=run.pk, lease_until=run.lease_until).update(
        lease_token=ticket, lease_until=now + lease
    )
    if not resumed:
        return {"status": "running", "run": run.pk}
    logger.warning("drift run %d stalled at identity %d: resuming", run.pk, run.cursor)
    enqueue_batch(run.pk, ticket, 0.0)
    return {"status": "resumed", "run": run.pk, "cursor": run.cursor}


def run_batch(
    run_id: int,
    ticket: str,
    *,
    enqueue_batch: EnqueueBatch,
    gateway: AzureGateway | None = None,
) -> dict[str, Any]:
    """Check identities after the run's cursor for up to DRIFT_BATCH_SECONDS, then hand on.

    The batch holds the run's lease (renewed after every identity) so no other batch runs at
    the same time; a message whose ticket is stale is dropped, unless the lease has expired.
    """
    holder = uuid.uuid4().hex
    lease = timedelta(seconds=settings.DRIFT_LEASE_SECONDS)
    now = timezone.now()
    claimed = (
        DriftRun.objects.filter(pk=run_id, active=True)
        .filter(Q(lease_token=ticket) | Q(lease_until__lt=now))
        .update(lease_token=holder, lease_until=now + lease, batches=F("batches") + 1)
    )
    if not claimed:
        return {"status": "not mine", "run": run_id}
    run = DriftRun.objects.get(pk=run_id)
    reads = PacedReads(gateway or get_gateway(), _pacer())
    deadline = time.monotonic() + settings.DRIFT_BATCH_SECONDS
    cursor, countdown, exhausted, stop = run.cursor, 0.0, False, False
    counted = (0, 0)
    while not (exhausted or stop):
        chunk = list(
            Identity.objects.filter(status=Identity.Status.READY, pk__gt=cursor).order_by("pk")[
                : settings.DRIFT_CHUNK
            ]
        )
        exhausted = len(chunk) < settings.DRIFT_CHUNK
        for identity in chunk:
            result = {"checked": 0, "drifted": 0, "errors": 0}
            try:
                findings = identity_check_drift(identity=identity, gateway=reads)
                result["checked"], result["drifted"] = 1, int(bool(findings))
            except ReadsThrottled as throttled:
                countdown, stop = throttled.retry_after, True
                break
            except GatewayError as error:
                result["errors"] = 1
                metrics.drift_recorded(result="error", finding_kinds=[])
                logger.warning("drift check of %s failed: %s", identity.name, error.describe())
            cursor = identity.pk
            kept = DriftRun.objects.filter(pk=run_id, lease_token=holder).update(
                cursor=cursor,
                checked=F("checked") + result["checked"],
                drifted=F("drifted") + result["drifted"],
                errors=F("errors") + result["errors"],
                reads=F("reads") + reads.reads - counted[0],
                throttled=F("throttled") + reads.throttled - counted[1],
                lease_until=timezone.now() + lease,
            )
            counted = (reads.reads, reads.throttled)
            if not kept:  # the lease was taken over (we were presumed dead): stop here
                return {"status": "lease lost", "run": run_id, "cursor": cursor}
            if time.monotonic() >= deadline:
                stop = True
                break
    if exhausted and not stop:
        DriftRun.objects.filter(pk=run_id, lease_token=holder).update(
            active=False,
            finished_at=timezone.now(),
            lease_token="",
            lease_until=None,
            reads=F("reads") + reads.reads - counted[0],
            throttled=F("throttled") + reads.throttled - counted[1],
        )
        run.refresh_from_db()
        logger.info(
            "drift run %d finished: %d checked, %d drifted, %d errors, %d reads (%d throttled)",
            run.pk,
            run.checked,
            run.drifted,
            run.errors,
            run.reads,
            run.throttled,
        )
        return {"status": "finished", "run": run_id, "checked": run.checked}
    next_ticket = uuid.uuid4().hex
    DriftRun.objects.filter(pk=run_id, lease_token=holder).update(
        lease_token=next_ticket,
        lease_until=timezone.now() + lease + timedelta(seconds=countdown),
        reads=F("reads") + reads.reads - counted[0],
        throttled=F("throttled") + reads.throttled - counted[1],
    )
    enqueue_batch(run_id, next_ticket, countdown)
    return {"status": "handed on", "run": run_id, "cursor": cursor, "countdown": countdown}


def identity_repair(*, identity: Identity, gateway: AzureGateway | None = None) -> list[Any]:
    """Make Azure match again: re-PUT everything the portal owns, remove extra assignments.

    Steps are recorded on the identity's original request (the progress view shows them).
    Returns the findings after the repair (empty when in sync).
    """
    gateway = gateway or get_gateway()
    origin = (
        IdentityRequest.objects.filter(identity=identity, kind=RequestKind.NEW)
        .order_by("created_at")
        .first()
    )
    if origin is None:
        raise ValueError(f"identity {identity.name} has no originating request")
    findings = find_drift(identity, gateway)
    reconcile.repair(origin, identity, findings, gateway)
    identity.refresh_from_db()
    return identity_check_drift(identity=identity, gateway=gateway)
