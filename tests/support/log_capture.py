"""Every log line of the test session, scanned for secrets at its end (issue 8).

A handler on the root logger, attached when the session starts, records every log record of the
test process exactly as production's `console` handler would write it: with that handler's
filters (the redaction of portal.logging) and formatter. The child processes the tests start
(workers, the emulator: tests.support.services.ManagedProcess) write their own log files; each
registers its file here. At the end of the session every line is scanned for API tokens, JWTs,
and the secrets the session knows (Django's SECRET_KEY, the test users' password, the emulator's
client secret and cluster tokens, anything `register_secret()` was given); a find fails the run.

tests/security/test_logs.py runs the same scan as the session's last test, and also checks that
the capture is real: enough lines, from the test process and from worker processes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# What a leaked credential looks like, whoever it belongs to.
PATTERNS = {
    "API token": re.compile(r"wip_[0-9A-Za-z]{42}"),
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
# Known secrets shorter than this are not scanned for (they would match ordinary words).
MIN_SECRET_LENGTH = 8


@dataclass(frozen=True)
class Leak:
    """A secret found in a log: where, and what kind (never the secret itself, which would
    leak it once more into the test report)."""

    source: str
    line: int
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.kind} ({self.excerpt})"


@dataclass
class SessionLog:
    """The session's log lines (this process) and log files (child processes)."""

    lines: list[str] = field(default_factory=list)
    child_logs: dict[Path, str] = field(default_factory=dict)  # path -> process name
    secrets: dict[str, str] = field(default_factory=dict)  # secret -> label
    detached: list[str] = field(default_factory=list)  # tests after which it was put back
    handler: logging.Handler | None = None

    def child_lines(self) -> Iterator[tuple[str, int, str]]:
        for path, name in self.child_logs.items():
            if path.exists():
                text = path.read_text(errors="replace")
                for number, line in enumerate(text.splitlines(), 1):
                    yield f"{name} log {path}", number, line

    def all_lines(self) -> Iterator[tuple[str, int, str]]:
        for number, line in enumerate(self.lines, 1):
            yield "test process log", number, line
        yield from self.child_lines()


SESSION_LOG = SessionLog()


def register_secret(value: str, label: str) -> None:
    """A secret the session handles (a client secret, a cluster token): it must not be logged."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        SESSION_LOG.secrets[value] = label


def register_child_log(path: Path, name: str) -> None:
    """A log file a child process writes (tests.support.services.ManagedProcess)."""
    SESSION_LOG.child_logs[path] = name


def _masked(secret: str) -> str:
    return f"{secret[:6]}… ({len(secret)} characters)"


def scan(lines: Iterable[tuple[str, int, str]], secrets: dict[str, str]) -> list[Leak]:
    leaks = []
    for source, number, line in lines:
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(line):
                leaks.append(Leak(source, number, kind, _masked(match.group(0))))
        for secret, label in secrets.items():
            if secret in line:
                leaks.append(Leak(source, number, label, _masked(secret)))
    return leaks


def session_leaks() -> list[Leak]:
    return scan(SESSION_LOG.all_lines(), SESSION_LOG.secrets)


class _CaptureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            SESSION_LOG.lines.extend(self.format(record).splitlines())
        except Exception:
            self.handleError(record)


def _console_handler() -> logging.Handler:
    for handler in logging.getLogger().handlers:
        if handler.get_name() == "console":
            return handler
    raise pytest.UsageError(
        "log capture: the root logger has no 'console' handler (settings.LOGGING), so the "
        "session's logs cannot be captured as production writes them"
    )


_RAW = _CaptureHandler(level=logging.NOTSET)
_RAW.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))


def _attach(where: str = "") -> None:
    root = logging.getLogger()
    # Loggers that do not propagate to the root (django.server) write through their own
    # handlers, without the redaction: captured as they are.
    for logger in list(logging.Logger.manager.loggerDict.values()):
        silent = isinstance(logger, logging.Logger) and not logger.propagate
        if silent and _RAW not in logger.handlers:
            logger.addHandler(_RAW)
    handler = SESSION_LOG.handler
    if handler is not None and handler in root.handlers:
        return
    if handler is not None and where:
        SESSION_LOG.detached.append(where)
    console = _console_handler()
    handler = _CaptureHandler(level=logging.NOTSET)
    # The production handler's own filters (redaction) and format: what would reach a log sink.
    for log_filter in console.filters:
        handler.addFilter(log_filter)
    handler.setFormatter(console.formatter)
    root.addHandler(handler)
    SESSION_LOG.handler = handler


def pytest_sessionstart(session: pytest.Session) -> None:
    from django.conf import settings

    from tests.support.people import PASSWORD

    _attach()
    register_secret(settings.SECRET_KEY, "Django SECRET_KEY")
    for key in settings.FIELD_ENCRYPTION_KEYS:
        register_secret(key, "a FIELD_ENCRYPTION_KEYS key")
    register_secret(PASSWORD, "test users' password")


def pytest_collection_finish(session: pytest.Session) -> None:
    # Importing test modules may configure logging afresh (e.g. importing portal.wsgi runs
    # django.setup()), which drops the handler: put it back before the first test.
    _attach()


def pytest_runtest_teardown(item: pytest.Item) -> None:
    _attach(item.nodeid)  # put back (and record) if this test reconfigured logging


def run_last(test: Any) -> Any:
    """Mark a test to run after every other test of the session."""
    test.run_last = True
    return test


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last = [item for item in items if getattr(getattr(item, "obj", None), "run_last", False)]
    if last:
        items[:] = [item for item in items if item not in last] + last


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The backstop: lines logged after the last test (fixture teardown) count too, and a run
    that did not include tests/security is scanned all the same. Under xdist each worker scans
    its own session and hands the finds to the controller (`pytest_testnodedown`)."""
    leaks = [str(leak) for leak in session_leaks()]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports and fails the run
        workeroutput["log_leaks"] = leaks
        return
    _fail_on_leaks(session, leaks + _WORKER_LEAKS)


_WORKER_LEAKS: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect what each worker's backstop found."""
    workeroutput = getattr(node, "workeroutput", None) or {}
    _WORKER_LEAKS.extend(
        f"[{workeroutput.get('workerid', '?')}] {leak}"
        for leak in workeroutput.get("log_leaks", [])
    )


def _fail_on_leaks(session: pytest.Session, leaks: list[str]) -> None:
    if not leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    report = "\n".join(f"  {leak}" for leak in leaks[:50])
    message = f"secrets found in the logs of this test session ({len(leaks)}):\n{report}"
    if reporter is not None:
        reporter.write_sep("=", "log scan", red=True)
        reporter.write_line(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
