"""Log formatting and the filter that keeps secrets out of every log line."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

# Bearer tokens, JWTs (three base64url segments), the portal's API tokens and key=value secrets.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    re.compile(r"wip_[A-Za-z0-9_-]{8,}"),
    re.compile(
        r"(?i)((?:client_assertion|access_token|client_secret|password|secret|token)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s&\"',}]+"
    ),
]


_TRACEBACK_FORMATTER = logging.Formatter()


def redact(text: str) -> str:
    """Replace anything that looks like a credential with a marker."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Rewrites each record's message so no token, assertion or secret reaches a log sink."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        # A traceback repeats exception messages, which may quote a token or an assertion.
        # Formatters reuse a record's exc_text once it is set, so setting it redacted here
        # covers every handler and formatter.
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACK_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)
