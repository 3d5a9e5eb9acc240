"""A real SMTP server (aiosmtpd) the test starts on a free port, and stops or restarts to play
an outage. It keeps every message it accepted, parsed, in arrival order."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support.services import free_port


@dataclass
class _Collector:
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refused: set[str] = field(default_factory=set)
    rcpt_delay: float = 0.0
    rcpts_seen: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        with self.lock:
            self.rcpts_seen += 1
        if self.rcpt_delay:
            # A slow server: a sender is mid-delivery (connected, message not yet accepted)
            # for this long, which is when a fault test kills it.
            await asyncio.sleep(self.rcpt_delay)
        if address in self.refused:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"


class SmtpServer:
    """`start()`, `stop()` (the port then refuses connections), `start()` again on the same
    port; `messages` are what arrived, across restarts."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._collector = _Collector()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[EmailMessage]:
        with self._collector.lock:
            return list(self._collector.messages)

    @property
    def rcpts_seen(self) -> int:
        """RCPT TO commands received so far: a delivery has begun for each."""
        with self._collector.lock:
            return self._collector.rcpts_seen

    def slow_down(self, seconds: float) -> None:
        """Answer each RCPT TO only after `seconds`."""
        self._collector.rcpt_delay = seconds

    def refuse(self, address: str) -> None:
        """Answer RCPT TO for `address` with a permanent 550 (one bad recipient)."""
        self._collector.refused.add(address)

    def start(self) -> SmtpServer:
        self._controller = Controller(self._collector, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def settings(self) -> dict[str, Any]:
        """Django settings that send through this server."""
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": self.host,
            "EMAIL_PORT": self.port,
            "EMAIL_USE_TLS": False,
            "EMAIL_USE_SSL": False,
            "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "",
            "EMAIL_TIMEOUT": 5,
        }

    def env(self) -> dict[str, str]:
        """The same, for a worker process the test starts."""
        return {key: str(value) for key, value in self.settings().items() if value != ""} | {
            "EMAIL_USE_TLS": "0",
            "EMAIL_USE_SSL": "0",
        }


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[SmtpServer]:
    """A running SMTP server, and Django settings that send to it."""
    server = SmtpServer().start()
    for key, value in server.settings().items():
        setattr(settings, key, value)
    yield server
    server.stop()
