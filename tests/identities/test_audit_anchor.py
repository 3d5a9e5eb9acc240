"""The audit chain anchored outside the database (identities/audit/anchor.py): checkpoints in a
write-once sink catch what deleting the chain-check records with the newest rows used to hide."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from identities.audit import audit_record
from identities.audit.anchor import (
    AnchorError,
    FolderSink,
    anchor_chain,
    anchor_verify,
)
from identities.models import AuditChainCheck, AuditEvent
from tests.identities.test_audit import _tamper

pytestmark = pytest.mark.django_db


def _append(count: int) -> None:
    for n in range(count):
        audit_record(actor=None, action="test.appended", data={"n": n})


def _verify() -> str:
    call_command("audit_verify", "--processes", "1", stdout=(out := _Out()))
    return out.text


class _Out:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def _cut_tail_and_checks(keep: int) -> None:
    """What a database owner can do: delete the newest rows and every chain-check record."""
    _tamper("DELETE FROM identities_auditevent WHERE id > %s", [keep])
    AuditChainCheck.objects.all().delete()


def test_cutting_the_tail_and_the_check_records_is_caught_by_the_anchor_sink() -> None:
    _append(5)
    _verify()
    _append(3)
    _verify()
    verdicts = AuditEvent.objects.filter(action="audit.chain_check_passed").order_by("id")
    assert [event.data["checkpoint"] for event in verdicts] == [1, 2]

    _cut_tail_and_checks(keep=6)  # rows 1-5, the first verdict; gone: rows 7-10 and more

    with pytest.raises(CommandError) as refused:
        _verify()
    message = str(refused.value)
    assert "cut from its end" in message and "checkpoint 2" in message


def test_a_folder_checkpoint_is_written_once_and_read_only(tmp_path: Path) -> None:
    _append(2)
    sink = FolderSink(tmp_path)
    checkpoint = anchor_chain(sink=sink)
    assert checkpoint is not None and checkpoint.rows == 2
    (path,) = tmp_path.iterdir()
    assert oct(path.stat().st_mode & 0o777) == "0o444"
    with pytest.raises(AnchorError, match="exists already"):
        sink.append(1, "{}")
    # Nothing new but the anchor record itself: no second checkpoint.
    assert anchor_chain(sink=sink) is None
    assert json.loads(path.read_text())["head_hash"] == AuditEvent.objects.get(id=2).hash


def test_a_missing_checkpoint_is_reported() -> None:
    _append(2)
    anchor_chain()
    _append(2)
    anchor_chain()
    folder = Path(settings.AUDIT_ANCHOR_DIR)
    first, second = sorted(folder.iterdir())
    second.unlink()  # the newest: the trail's audit.anchored row still names it

    verdict = anchor_verify(rows=AuditEvent.objects.count())
    assert not verdict.ok
    assert "records checkpoint 2" in verdict.reason

    first.unlink()
    _append(1)
    anchor_chain()  # the sink starts over: a new checkpoint 1, well linked
    verdict = anchor_verify(rows=AuditEvent.objects.count())
    assert not verdict.ok and "records checkpoint 1" in verdict.reason


def test_a_forged_or_edited_checkpoint_is_reported() -> None:
    _append(3)
    anchor_chain()
    (path,) = Path(settings.AUDIT_ANCHOR_DIR).iterdir()
    edited = json.loads(path.read_text())
    edited["rows"] = 2
    path.chmod(0o644)
    path.write_text(json.dumps(edited) + "\n")

    verdict = anchor_verify(rows=AuditEvent.objects.count())
    assert not verdict.ok and "not signed by the portal" in verdict.reason


def test_a_rewritten_anchored_row_is_reported(settings: Any) -> None:
    _append(3)
    anchor_chain()
    _tamper("UPDATE identities_auditevent SET hash = %s WHERE id = 3", ["0" * 64])
    verdict = anchor_verify(rows=AuditEvent.objects.count())
    assert not verdict.ok and verdict.broken_id == 3 and "rewritten" in verdict.reason


@pytest.fixture
def blob_sink(azurite: Any) -> Iterator[None]:
    """The `blob` sink on Azurite: a container of its own, the settings pointing at it."""
    from azure.storage.blob import BlobServiceClient
    from django.test import override_settings

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container("audit-anchors")
    with override_settings(
        AUDIT_ANCHOR_SINK="blob",
        AUDIT_ANCHOR_BLOB_CONNECTION_STRING=azurite.connection_string,
        AUDIT_ANCHOR_BLOB_CONTAINER="audit-anchors",
        AUDIT_ANCHOR_BLOB_NAME="checkpoints.jsonl",
    ):
        yield


@pytest.mark.usefixtures("blob_sink")
def test_the_blob_sink_on_azurite_catches_a_cut_tail_and_never_truncates() -> None:
    from azure.storage.blob import BlobClient

    from identities.audit.anchor import configured_sink

    _append(5)
    _verify()
    _append(3)
    _verify()
    sink = configured_sink()
    assert sink is not None and "append blob" in sink.describe()
    lines = sink.read()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    blob = BlobClient.from_connection_string(
        settings.AUDIT_ANCHOR_BLOB_CONNECTION_STRING, "audit-anchors", "checkpoints.jsonl"
    )
    assert blob.get_blob_properties().blob_type == "AppendBlob"

    # Azurite keeps no immutability policy: the command says what that leaves open.
    err = _Out()
    call_command("audit_verify", "--processes", "1", stdout=_Out(), stderr=err)
    assert "has no immutability policy" in err.text

    _cut_tail_and_checks(keep=6)
    with pytest.raises(CommandError, match="cut from its end"):
        _verify()
    assert len(sink.read()) == 3  # a failed check anchors nothing, and nothing was truncated
