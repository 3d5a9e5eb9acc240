"""The drift run's client-side read bucket (provisioning.drift.ReadPacer), on a fake clock."""

from __future__ import annotations

import pytest

from provisioning.drift import ReadPacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def pacer(clock: FakeClock, *, rate: float = 25, burst: float = 5, reserve: int = 25) -> ReadPacer:
    return ReadPacer(rate=rate, burst=burst, reserve=reserve, clock=clock, sleep=clock.sleep)


def test_after_the_burst_reads_come_at_the_refill_rate() -> None:
    clock = FakeClock()
    reads = pacer(clock)
    for _ in range(105):
        reads.acquire("sub-a")
    # 5 from the burst, then 100 at 25/s.
    assert clock.now == pytest.approx(100 / 25, rel=1e-6)


def test_each_subscription_has_its_own_bucket() -> None:
    clock = FakeClock()
    reads = pacer(clock, burst=1)
    reads.acquire("sub-a")
    reads.acquire("SUB-B")
    assert clock.now == 0
    reads.acquire("sub-a")
    assert clock.now == pytest.approx(1 / 25)


def test_a_retry_after_holds_the_subscription() -> None:
    clock = FakeClock()
    reads = pacer(clock)
    reads.hold("sub-a", 3)
    reads.acquire("sub-b")
    assert clock.now == 0
    reads.acquire("sub-a")
    assert clock.now == pytest.approx(3)


def test_a_low_remaining_count_waits_for_arm_to_refill_the_reserve() -> None:
    clock = FakeClock()
    reads = pacer(clock, rate=25, reserve=25)
    reads.observe("sub-a", 240)  # plenty left: no wait
    reads.acquire("sub-a")
    assert clock.now == 0
    reads.observe("sub-a", 5)  # others used ARM's bucket: wait until 25 are back
    reads.acquire("sub-a")
    assert clock.now == pytest.approx(20 / 25)
