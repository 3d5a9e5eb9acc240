"""Conditional and long-polling reads: RFC 7240's `Prefer: wait` and RFC 9110's If-None-Match,
parsed once for the views that honour them."""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request

_WAIT_VALUE = re.compile(r"[0-9]{1,9}")


def preferred_wait(request: Request) -> int | None:
    """`Prefer: wait=N` (RFC 7240 §4.3), capped at API_WAIT_MAX_SECONDS; None when absent.
    Other preferences are ignored, as the RFC asks; a wait that is not a number is a 400."""
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not _WAIT_VALUE.fullmatch(value):
            raise serializers.ValidationError(
                {
                    "Prefer": [
                        serializers.ErrorDetail(
                            f"wait must be a whole number of seconds (RFC 7240), e.g. "
                            f"`Prefer: wait=30`; got {value!r}.",
                            code="wait_seconds",
                        )
                    ]
                }
            )
        return min(int(value), settings.API_WAIT_MAX_SECONDS)
    return None


def if_none_match(request: Request) -> set[str]:
    """The entity tags of If-None-Match, compared weakly (RFC 9110 §13.1.2): W/ dropped."""
    header = request.headers.get("If-None-Match", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
