"""Checks of the whole audit chain: recorded and signed verdicts, the anchor that catches a
rewritten or shortened chain, and the audit page that shows the newest verdict plus a live walk
of the rows added since (instead of walking every row on every view)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from identities.audit import audit_record, audit_verify_chain, event_hash
from identities.audit.chain import check_is_authentic
from identities.audit.selectors import audit_chain_status
from identities.errors import PermissionDeniedError
from identities.models import (
    AuditChainCheck,
    AuditEvent,
    ChainCheckStatus,
    ChainCheckTrigger,
    IdentityRequest,
)
from identities.services import audit_chain_check_run, audit_chain_check_start
from tests.ui.conftest import ClientFor
from tests.ui.test_audit import alter_behind_the_portals_back

pytestmark = pytest.mark.django_db


def full_check(processes: int = 1) -> AuditChainCheck:
    """What the schedule does: start a check and walk the chain in this process."""
    check, created = audit_chain_check_start(actor=None, trigger=ChainCheckTrigger.SCHEDULE)
    assert created
    return audit_chain_check_run(check_id=check.pk, processes=processes)


def rewrite_from(row_id: int, actor_label: str) -> None:
    """What someone with write access to the database but without the portal's key could do:
    alter a row and recompute every hash from it to the end, so that the chain walks clean."""
    rows = list(AuditEvent.objects.filter(id__gte=row_id).order_by("id"))
    prev_hash = AuditEvent.objects.get(id=row_id - 1).hash if row_id > 1 else "0" * 64
    rows[0].actor_label = actor_label
    for row in rows:
        row.prev_hash = prev_hash
        row.hash = event_hash(row)
        prev_hash = row.hash
    # prev_hash is unique: shift the rows' values through temporary ones first.
    alter_behind_the_portals_back(
        "UPDATE identities_auditevent SET prev_hash = 'x' || id, hash = 'y' || id WHERE id >= %s",
        [row_id],
    )
    for row in rows:
        alter_behind_the_portals_back(
            "UPDATE identities_auditevent SET actor_label = %s, prev_hash = %s, hash = %s "
            "WHERE id = %s",
            [row.actor_label, row.prev_hash, row.hash, row.pk],
        )


def test_a_passed_check_is_recorded_and_signed(ready_request: IdentityRequest) -> None:
    rows = AuditEvent.objects.count()

    check = full_check()

    assert check.status == ChainCheckStatus.PASSED
    assert (check.rows_expected, check.rows_checked, check.last_id) == (rows, rows, rows)
    assert check.last_hash == AuditEvent.objects.get(id=rows).hash
    assert check.finished_at is not None
    assert check_is_authentic(check)
    check.refresh_from_db()  # the signature holds for what the database hands back
    assert check_is_authentic(check)
    verdict = AuditEvent.objects.order_by("-id")[0]  # the verdict is on the trail, after its rows
    assert (verdict.id, verdict.action) == (rows + 1, "audit.chain_check_passed")
    assert verdict.actor is None
    assert verdict.data == {
        "check": check.pk,
        "trigger": "schedule",
        "rows_checked": rows,
        "broken_id": None,
        "reason": "",
        "checkpoint": 1,  # what it verified, anchored in the sink (identities/audit/anchor.py)
    }


def test_a_check_names_an_altered_row(ready_request: IdentityRequest) -> None:
    victim = AuditEvent.objects.order_by("id")[2]
    alter_behind_the_portals_back(
        "UPDATE identities_auditevent SET action = %s WHERE id = %s", ["x.forged", victim.pk]
    )

    check = full_check()

    assert check.status == ChainCheckStatus.FAILED
    assert check.broken_id == victim.pk
    assert check.last_id is None  # a failed check anchors nothing
    assert "altered" in check.reason
    verdict = AuditEvent.objects.filter(action="audit.chain_check_failed").get()
    assert verdict.data["broken_id"] == victim.pk


def test_a_rewritten_chain_walks_clean_but_the_next_check_catches_it(
    ready_request: IdentityRequest,
) -> None:
    anchor = full_check()
    rewrite_from(2, "mallory")
    assert audit_verify_chain().ok  # the walk alone sees nothing wrong

    check = full_check()

    assert check.status == ChainCheckStatus.FAILED
    assert check.broken_id == anchor.last_id
    assert f"no longer has the hash check #{anchor.pk}" in check.reason
    assert "rewritten" in check.reason


def test_rows_cut_from_the_end_are_caught_by_the_next_check(
    ready_request: IdentityRequest,
) -> None:
    anchor = full_check()
    assert anchor.last_id is not None
    keep = anchor.last_id - 2
    alter_behind_the_portals_back("DELETE FROM identities_auditevent WHERE id > %s", [keep])

    check = full_check()

    assert check.status == ChainCheckStatus.FAILED
    assert check.broken_id == keep + 1
    assert f"rows {keep + 1}..{anchor.last_id} were removed" in check.reason


def test_one_check_runs_at_a_time_and_an_abandoned_one_is_closed(
    ready_request: IdentityRequest, auditor: Any
) -> None:
    first, created = audit_chain_check_start(actor=None, trigger=ChainCheckTrigger.SCHEDULE)
    again, created_again = audit_chain_check_start(actor=auditor, trigger=ChainCheckTrigger.USER)
    assert created and not created_again and again.pk == first.pk

    # Its worker was killed: after the task time limit it no longer blocks a new check.
    AuditChainCheck.objects.filter(pk=first.pk).update(
        started_at=timezone.now() - timedelta(hours=2)
    )
    second, created = audit_chain_check_start(actor=None, trigger=ChainCheckTrigger.SCHEDULE)

    assert created and second.pk != first.pk
    first.refresh_from_db()
    assert first.status == ChainCheckStatus.ERROR
    assert "stopped before it finished" in first.reason
    assert check_is_authentic(first)


def test_a_finished_check_is_not_walked_again_by_a_redelivered_task(
    ready_request: IdentityRequest,
) -> None:
    check = full_check()
    finished_at = check.finished_at

    again = audit_chain_check_run(check_id=check.pk)

    assert again.finished_at == finished_at


def test_requesters_cannot_start_a_check(ready_request: IdentityRequest, requester: Any) -> None:
    with pytest.raises(PermissionDeniedError):
        audit_chain_check_start(actor=requester, trigger=ChainCheckTrigger.USER)
    assert not AuditChainCheck.objects.exists()


def test_a_forged_verdict_is_reported(ready_request: IdentityRequest, auditor: Any) -> None:
    victim = AuditEvent.objects.order_by("id")[1]
    alter_behind_the_portals_back(
        "UPDATE identities_auditevent SET actor_label = %s WHERE id = %s", ["mallory", victim.pk]
    )
    failed = full_check()
    assert failed.status == ChainCheckStatus.FAILED
    # Turn the failed verdict into a passed one in the database, without the key.
    AuditChainCheck.objects.filter(pk=failed.pk).update(
        status=ChainCheckStatus.PASSED, broken_id=None, reason=""
    )

    status = audit_chain_status(auditor)

    assert status is not None
    assert (status.ok, status.forged) == (False, True)
    assert f"check #{failed.pk} was altered" in status.reason


def test_a_rotated_secret_key_keeps_earlier_verdicts_valid(
    ready_request: IdentityRequest, settings: Any
) -> None:
    check = full_check()
    old_key = settings.SECRET_KEY

    settings.SECRET_KEY = "a-new-key-" + "x" * 50
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert check_is_authentic(check)
    settings.SECRET_KEY_FALLBACKS = []
    assert not check_is_authentic(check)


def test_the_command_records_its_check_and_fails_on_a_rewritten_chain(
    ready_request: IdentityRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    call_command("audit_verify", "--processes", "1")
    first = AuditChainCheck.objects.get()
    assert (first.trigger, first.status) == (ChainCheckTrigger.COMMAND, ChainCheckStatus.PASSED)
    assert "audit chain OK" in capsys.readouterr().out

    rewrite_from(3, "mallory")
    with pytest.raises(CommandError, match=f"BROKEN at row {first.last_id}.*rewritten"):
        call_command("audit_verify", "--processes", "1")


def test_the_schedule_walks_the_chain() -> None:
    from django.conf import settings

    from provisioning.tasks import verify_audit_chain

    entry = settings.CELERY_BEAT_SCHEDULE["verify-audit-chain"]
    assert entry["task"] == verify_audit_chain.name
    assert entry["schedule"] == float(settings.AUDIT_VERIFY_INTERVAL_SECONDS)


# --- the audit page ------------------------------------------------------------------------------


def test_the_page_shows_the_full_check_and_walks_only_the_rows_since(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest
) -> None:
    check = full_check()
    for n in range(3):
        audit_record(actor=None, action="test.appended", data={"n": n})

    response = client_for(auditor).get(reverse("audit_log"))

    chain = response.context["chain"]
    assert chain.ok is True
    assert chain.full_check.pk == check.pk
    assert (chain.tail_rows, chain.tail_verified) == (4, True)  # the verdict's row and three
    assert chain.newest_hash == AuditEvent.objects.order_by("-id")[0].hash
    text = " ".join(response.content.decode().split())
    assert f"Check #{check.pk} walked the whole chain ({check.rows_checked} rows)" in text
    assert "the 4 rows added since were verified now" in text


def test_a_row_altered_after_the_full_check_is_caught_on_the_page(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest
) -> None:
    full_check()
    added = audit_record(actor=None, action="test.appended", data={})
    audit_record(actor=None, action="test.appended", data={})
    alter_behind_the_portals_back(
        "UPDATE identities_auditevent SET data = %s WHERE id = %s", ['{"n": 1}', added.pk]
    )

    response = client_for(auditor).get(reverse("audit_log"))

    chain = response.context["chain"]
    assert (chain.ok, chain.broken_id) == (False, added.pk)
    assert "checking the 3 rows added since" in chain.found_by  # with the verdict's row
    assert f"Chain broken at row {added.pk}" in response.content.decode()


def test_a_rewrite_before_the_full_check_is_caught_on_the_page(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest
) -> None:
    check = full_check()
    rewrite_from(2, "mallory")

    chain = client_for(auditor).get(reverse("audit_log")).context["chain"]

    assert (chain.ok, chain.broken_id) == (False, check.last_id)
    assert "rewritten" in chain.reason


def test_a_long_tail_is_left_to_the_next_full_check(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest
) -> None:
    with override_settings(AUDIT_TAIL_VERIFY_LIMIT=2):
        unverified = client_for(auditor).get(reverse("audit_log"))
        check = full_check()
        for _ in range(3):
            audit_record(actor=None, action="test.appended", data={})
        partly = client_for(auditor).get(reverse("audit_log"))

    assert unverified.context["chain"].ok is None
    assert "Not verified yet" in unverified.content.decode()
    chain = partly.context["chain"]
    assert (chain.ok, chain.tail_rows, chain.tail_verified) == (True, 4, False)
    assert f"Chain verified up to row {check.last_id}" in partly.content.decode()


def test_an_auditor_starts_a_check_and_the_page_follows_it(
    client_for: ClientFor, auditor: Any, ready_request: IdentityRequest
) -> None:
    client = client_for(auditor)

    response = client.post(reverse("audit_chain_verify"))

    assert response.status_code == 302
    check = AuditChainCheck.objects.get()
    assert (check.status, check.requested_by, check.trigger) == (
        ChainCheckStatus.RUNNING,
        auditor,
        ChainCheckTrigger.USER,
    )
    requested = AuditEvent.objects.order_by("-id")[0]
    assert (requested.action, requested.actor, requested.data) == (
        "audit.chain_check_requested",
        auditor,
        {"check": check.pk},
    )
    page = client.get(reverse("audit_log"))
    assert page.context["chain_poll_ms"] > 0
    assert f"Check #{check.pk} is walking the whole chain" in page.content.decode()
    running = client.get(reverse("audit_chain_progress"), HTTP_ACCEPT="application/json").json()
    assert (running["status"], running["poll_ms"] > 0) == ("running", True)

    audit_chain_check_run(check_id=check.pk)  # what the worker does (tests/integration)
    done = client.get(reverse("audit_chain_progress"), HTTP_ACCEPT="application/json").json()

    assert (done["status"], done["poll_ms"]) == ("idle", 0)
    assert f"Check #{check.pk} walked the whole chain" in " ".join(
        done["html"]["chain-status"].split()
    )
    assert "asked by" in done["html"]["chain-status"]


def test_a_second_request_joins_the_running_check(
    client_for: ClientFor, auditor: Any, approver: Any, ready_request: IdentityRequest
) -> None:
    client_for(auditor).post(reverse("audit_chain_verify"))
    response = client_for(approver).post(reverse("audit_chain_verify"), follow=True)

    assert AuditChainCheck.objects.count() == 1
    assert "is already verifying the whole chain" in response.content.decode()


def test_requesters_get_no_chain_status(
    client_for: ClientFor, requester: Any, ready_request: IdentityRequest
) -> None:
    response = client_for(requester).get(
        reverse("audit_chain_progress"), HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 403
    assert "chain" not in response.json().get("html", {})
