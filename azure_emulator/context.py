"""What every handler shares: the store, the live knobs and in-memory coordination state."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from azure_emulator import knobs as knob_table
from azure_emulator.faults import FaultDice, WriteThrottle
from azure_emulator.requestlog import RequestLog
from azure_emulator.state import Store


@dataclass
class Context:
    """Shared by all request threads.

    ``knobs`` is replaced wholesale on every update (never mutated in place), so a request that
    read it once sees one consistent configuration for its whole life.
    """

    store: Store
    log: RequestLog
    start_knobs: dict[str, Any]
    # The base URL the emulator advertises in persisted URLs (issuers, kubeconfigs).
    public_url: str = ""
    ca_pem: bytes = b""
    # The control API answers loopback clients only unless this is set (containers).
    allow_remote_control: bool = False
    knobs: Mapping[str, Any] = field(default_factory=dict)
    throttle: WriteThrottle = field(default_factory=WriteThrottle)
    dice: FaultDice = field(default_factory=FaultDice)
    # identity id (lower-case) -> monotonic time until which a FIC write occupies it.
    fic_busy_until: dict[str, float] = field(default_factory=dict)
    fic_busy_lock: threading.Lock = field(default_factory=threading.Lock)
    # Sign-in: authorization code -> what it was issued for (single use, kept in memory only).
    signin_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    signin_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.knobs:
            self.knobs = dict(self.start_knobs)

    def update_knobs(self, updates: Mapping[str, Any]) -> Mapping[str, Any]:
        """Validate and apply a partial update (``KnobError`` if any value is refused)."""
        self.knobs = knob_table.validated(self.knobs, updates)
        return self.knobs

    def restore_knobs(self) -> None:
        """Back to the values the process started with (defaults + environment)."""
        self.knobs = dict(self.start_knobs)
        self.throttle.clear()
        self.dice.reseed()
