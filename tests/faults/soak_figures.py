"""The chaos soak's plan (how big a run is, its seed) and figures (what it did and found, as a
summary for the test output and as the Markdown of benchmarks/results/soak.md)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

from identities.models import RequestStatus


@dataclass(frozen=True)
class SoakPlan:
    """How big a run is; `seed` decides every random choice (SOAK_SEED replays one)."""

    requests: int
    workers: int
    concurrency: int
    kills: int
    in_flight: int  # requests filed but not yet terminal, kept topped up
    latency_ms: int
    seed: int
    budget_seconds: float  # a backstop for the whole run

    @classmethod
    def from_env(
        cls,
        *,
        requests: int,
        workers: int,
        concurrency: int,
        kills: int,
        in_flight: int,
        latency_ms: int,
        budget_seconds: float,
    ) -> SoakPlan:
        raw_seed = os.environ.get("SOAK_SEED")
        seed = int(raw_seed) if raw_seed else random.SystemRandom().randrange(2**32)
        return cls(
            requests=int(os.environ.get("SOAK_REQUESTS") or requests),
            workers=workers,
            concurrency=concurrency,
            kills=kills,
            in_flight=in_flight,
            latency_ms=latency_ms,
            seed=seed,
            budget_seconds=budget_seconds,
        )


@dataclass
class SoakFigures:
    """What a run did and what it found; `problems` is empty when every invariant held."""

    plan: SoakPlan
    started_at: str = ""
    filed: int = 0
    final: dict[str, int] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)
    kills: int = 0
    redis_restarts: int = 0
    database_cuts: int = 0
    storms: list[str] = field(default_factory=list)
    answered_429: int = 0
    answered_500: int = 0
    arm_and_token_calls: int = 0
    requeued: int = 0
    database_retries: int = 0
    duplicates: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    failed_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duration: float = 0.0
    load_start: float = 0.0
    load_peak: float = 0.0
    load_end: float = 0.0
    events: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"soak: SOAK_SEED={self.plan.seed} SOAK_REQUESTS={self.plan.requests}",
            f"  {self.filed} filed, final {self.final}, {len(self.lost)} lost, "
            f"{len(self.duplicates)} duplicated, {len(self.orphans)} orphaned",
            f"  {self.kills} worker kills, {self.redis_restarts} Redis restarts, "
            f"{self.database_cuts} PostgreSQL cuts, storms: {', '.join(self.storms)}",
            f"  Azure answered 429 x{self.answered_429}, 500 x{self.answered_500} "
            f"(of {self.arm_and_token_calls} calls); sweeper re-enqueued {self.requeued}; "
            f"tasks rerun after losing the database: {self.database_retries}",
            f"  {self.duration:.1f}s, load average {self.load_start:.2f} at the start, "
            f"{self.load_peak:.2f} at the peak, {self.load_end:.2f} at the end",
            *(f"  event: {event}" for event in self.events),
            *(f"  failed: {error}" for error in self.failed_errors),
            *(f"  PROBLEM: {problem}" for problem in self.problems),
        ]
        return "\n".join(lines)

    def markdown(self) -> str:
        plan = self.plan
        failed = self.final.get(RequestStatus.FAILED, 0)
        rows = [
            ("requests filed and approved through the API", self.filed),
            ("ready", self.final.get(RequestStatus.READY, 0)),
            ("failed (operation and Azure code named)", failed),
            ("lost (not terminal, or missing)", len(self.lost)),
            ("duplicated Azure objects", len(self.duplicates)),
            ("orphaned Azure objects", len(self.orphans)),
            ("Azure differing from the database otherwise", len(self.mismatches)),
            ("worker processes SIGKILLed (and replaced)", self.kills),
            ("Redis restarts (empty)", self.redis_restarts),
            ("PostgreSQL cuts (all worker connections)", self.database_cuts),
            ("injected 429 answers", self.answered_429),
            ("injected 500 answers", self.answered_500),
            ("ARM and token calls in all", self.arm_and_token_calls),
            ("sweeper re-enqueues", self.requeued),
            ("task reruns after losing PostgreSQL", self.database_retries),
            ("duration (s)", f"{self.duration:.1f}"),
            (
                "load average (1 min): start / peak / end",
                f"{self.load_start:.2f} / {self.load_peak:.2f} / {self.load_end:.2f}",
            ),
        ]
        table = "\n".join(f"| {name} | {value} |" for name, value in rows)
        events = "\n".join(f"- {event}" for event in self.events)
        errors = "\n".join(f"- {error}" for error in self.failed_errors) or "- none"
        verdict = "every invariant held" if not self.problems else "; ".join(self.problems)
        return (
            "# Chaos soak\n\n"
            f"Run {self.started_at}: SOAK_SEED={plan.seed}, {plan.requests} requests (1 to 3 "
            f"Key Vault roles each), {plan.workers} Celery worker processes with "
            f"{plan.concurrency} pool processes each, a private Redis, PostgreSQL behind a TCP "
            f"proxy, emulator latency {plan.latency_ms} ms, on a 2-core machine shared with "
            "other test runs.\n\n"
            "| figure | value |\n|---|---:|\n"
            f"{table}\n\n"
            f"Invariants (all terminal, none lost, Azure equals the database, audit chain "
            f"verifies, heartbeat and every live worker's liveness file fresh): {verdict}.\n\n"
            f"Storms: {', '.join(self.storms)}.\n\n"
            f"Chaos, in order (progress = share of requests terminal):\n\n{events}\n\n"
            f"Failed requests' last_error:\n\n{errors}\n\n"
            "Replay: `SOAK_SEED=<seed> SOAK_REQUESTS=<n> pytest -m soak "
            "tests/faults/test_chaos_soak.py -rP` (see README, Fault suite).\n"
        )
