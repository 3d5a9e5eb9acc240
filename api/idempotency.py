"""`Idempotency-Key` on POSTs (draft-ietf-httpapi-idempotency-key-header): pipelines retry safely.

The first POST with a key claims an IdempotencyRecord (unique per user and key) *before* the
action runs, then stores the response it got. A retry with the same key and the same request
(method, path, body) gets that stored response again, marked `Idempotent-Replayed: true`, and
nothing runs twice; with a different request it is a 422; while the first is still running, a
409 with Retry-After. A 5xx is not stored, so the client may retry it. Records expire after
RECORD_TTL. The record is a replay cache, not domain state, so it writes no audit row.

Expired records are deleted by `idempotency_records_purge`, run hourly by beat
(`portal.tasks.purge_idempotency_records`), and one whose key is presented again is deleted
then. The table holds about a day and an hour of keyed POSTs.

Known window: a process killed after the action committed and before its response was stored
leaves a claim that is taken over after CLAIM_TIMEOUT, and the action runs again. Closing it for
services that are not naturally idempotent (filing a request) needs the key stored with their
own row, in their transaction: a domain change.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import IdempotencyRecord, IdempotencyStatus
from api.problems import ProblemError, ProblemResponse

HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 255
RECORD_TTL = timedelta(hours=24)
# A claim older than this whose response never arrived belongs to a request that died.
CLAIM_TIMEOUT = timedelta(minutes=2)
REPLAYED_HEADER = "Idempotent-Replayed"
_STORED_HEADERS = ("Location", "Retry-After")
_WITHHELD = "idempotency_withheld_fields"

Handler = TypeVar("Handler", bound=Callable[..., Response])


@dataclass(frozen=True)
class Claim:
    """The outcome of presenting a key: run the action (`record` is ours) or replay `record`."""

    record: IdempotencyRecord
    replay: bool


def request_fingerprint(request: Request) -> str:
    """SHA-256 of method, path with query, and the parsed body in canonical JSON (so key order
    and whitespace do not make two equal requests differ)."""
    body = request.data
    if hasattr(body, "lists"):  # a QueryDict (form data): keep repeated keys
        body = {key: values for key, values in body.lists()}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    material = f"{request.method}\n{request.get_full_path()}\n{canonical}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def idempotency_claim(*, user: Any, key: str, fingerprint: str) -> Claim:
    """Claim `key` for this request, or find the earlier request that used it.

    Raises ProblemError: 422 when the key was used with a different request, 409 while the
    earlier request is still running.
    """
    now = timezone.now()
    # Expired records are the hourly purge's to delete; one of this very key is deleted below,
    # when the insert meets it.
    for _ in range(3):  # an abandoned row is taken over; a lost race is re-read
        try:
            with transaction.atomic():  # a savepoint, so a clash does not spoil an outer block
                record = IdempotencyRecord.objects.create(
                    user=user, key=key, fingerprint=fingerprint, expires_at=now + RECORD_TTL
                )
            return Claim(record=record, replay=False)
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if existing is None:
            continue
        if existing.expires_at <= now:
            IdempotencyRecord.objects.filter(pk=existing.pk, expires_at__lte=now).delete()
            continue
        if existing.fingerprint != fingerprint:
            raise ProblemError(
                "idempotency-key-reused",
                f"The Idempotency-Key {key!r} was already used with a different request "
                "(method, path or body). Use a new key for a new request.",
            )
        if existing.status == IdempotencyStatus.DONE:
            return Claim(record=existing, replay=True)
        if existing.created_at <= now - CLAIM_TIMEOUT:
            # Compare-and-set: of two retries taking over an abandoned claim, one wins.
            taken = IdempotencyRecord.objects.filter(
                pk=existing.pk,
                status=IdempotencyStatus.IN_PROGRESS,
                created_at=existing.created_at,
            ).update(created_at=now, expires_at=now + RECORD_TTL)
            if taken:
                existing.created_at = now
                return Claim(record=existing, replay=False)
        raise ProblemError(
            "idempotency-key-in-use",
            f"A request with the Idempotency-Key {key!r} is still being processed; retry shortly.",
            headers={"Retry-After": "1"},
        )
    raise ProblemError(
        "idempotency-key-in-use",
        f"The Idempotency-Key {key!r} is contended; retry shortly.",
        headers={"Retry-After": "1"},
    )


def idempotency_records_purge() -> int:
    """Delete every expired record; returns how many."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


def withhold_from_replays(response: Response, *fields: str) -> Response:
    """Mark top-level `fields` of `response` as secrets: the stored copy (what a replay
    answers) has them empty, so the idempotency table never holds a usable secret."""
    setattr(response, _WITHHELD, (*getattr(response, _WITHHELD, ()), *fields))
    return response


def idempotency_settle(*, record: IdempotencyRecord, response: Response) -> None:
    """Store the response to replay (anything below 500), or give the key back (5xx)."""
    if response.status_code >= 500:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return
    body = json.loads(json.dumps(response.data, cls=DjangoJSONEncoder))
    for field in getattr(response, _WITHHELD, ()):
        if isinstance(body, dict) and field in body:
            body[field] = ""
    headers = {name: response[name] for name in _STORED_HEADERS if response.has_header(name)}
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status=IdempotencyStatus.DONE,
        response_status=response.status_code,
        response_body=body,
        response_headers=headers,
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, status=IdempotencyStatus.IN_PROGRESS).delete()


def replayed_response(record: IdempotencyRecord) -> Response:
    status = record.response_status or 200
    response_class = ProblemResponse if status >= 400 else Response
    headers = {**record.response_headers, REPLAYED_HEADER: "true"}
    return response_class(record.response_body, status=status, headers=headers)


def idempotent(handler: Handler) -> Handler:
    """Wrap a view's `post`: honour `Idempotency-Key` when the client sends one.

    Runs after authentication, permissions and throttling (inside DRF's dispatch), so keys are
    per authenticated user. Errors raised by the action become their problem response here, so
    a 4xx is stored and replayed like any other answer.
    """

    @functools.wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        key = key.strip()
        if not key or len(key) > KEY_MAX_LENGTH or not key.isprintable():
            raise ProblemError(
                "invalid-request",
                f"{HEADER} must be 1 to {KEY_MAX_LENGTH} printable characters "
                "(a UUID is a good choice).",
            )
        claim = idempotency_claim(
            user=request.user, key=key, fingerprint=request_fingerprint(request)
        )
        if claim.replay:
            return replayed_response(claim.record)
        try:
            try:
                response = handler(view, request, *args, **kwargs)
            except Exception as exc:  # becomes its problem response, as in DRF's dispatch
                response = view.handle_exception(exc)
        except BaseException:
            idempotency_release(record=claim.record)
            raise
        idempotency_settle(record=claim.record, response=response)
        return response

    wrapper.idempotent = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def is_idempotent(handler: Any) -> bool:
    return bool(getattr(handler, "idempotent", False))
