"""Job-wide rate limits: the driver's `PermitBank` (with a fake clock) and tasks' `SharedBudget`
leasing from it through the coordinator on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from aiquery.client.shared_rate import PermitBank, PermitsUnavailableError, SharedBudget
from aiquery.spark import coordinator as coordinator_module
from aiquery.spark.coordinator import Coordinator


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bank_grants_the_rate_over_time_plus_one_second_of_burst() -> None:
    clock = Clock()
    bank = PermitBank(clock)
    granted = 0.0
    for _ in range(10_000):  # 20 s of eager askers, 5 units at a time, every 10 ms
        for _ in range(4):
            if bank.grant("ep|requests", 600, 5) == 0.0:
                granted += 5
        clock.now += 0.01
    assert 600 / 60 * 100 <= granted <= 600 / 60 * 101 + 5  # 10/s for 100 s, plus the burst


def test_a_refusal_says_how_long_to_wait_and_debt_is_paid_first() -> None:
    clock = Clock()
    bank = PermitBank(clock)
    assert bank.grant("k", 60, 1) == 0.0  # a full bucket of one unit (1/s)
    assert bank.grant("k", 60, 1) == pytest.approx(1.0)
    clock.now += 1.0
    assert bank.grant("k", 60, 1, debt=2.0) == pytest.approx(2.0)  # 2 tokens owed first
    with pytest.raises(ValueError):
        bank.grant("k", 0, 1)


@pytest.fixture
def coordinator() -> Iterator[Coordinator]:
    found = Coordinator("127.0.0.1", 0, None)
    yield found
    found.stop()


def test_tasks_sharing_a_bank_hold_the_rate_together(coordinator: Coordinator) -> None:
    """Four tasks, each free to go as fast as it likes, share 6,000 requests/minute (100/s)."""
    sent: list[float] = []

    async def task() -> None:
        budget = SharedBudget(coordinator.url, coordinator.token, "shared-test|requests", 6000)
        try:
            for _ in range(60):
                await budget.take(1)
                sent.append(time.monotonic())
        finally:
            await budget.close()
        assert budget.leases <= 60 / 5 + 1  # a lease carries 50 ms of the rate: 5 permits

    async def job() -> None:
        await asyncio.gather(*(task() for _ in range(4)))

    started = time.monotonic()
    asyncio.run(job())
    elapsed = time.monotonic() - started
    # 240 requests at 100/s with a one-second burst of 100, less the 4 leases still held.
    assert len(sent) == 240
    assert elapsed >= (240 - 100 - 4 * 5) / 100 * 0.95, f"{elapsed:.2f} s: the limit was outrun"
    assert elapsed < 240 / 100 * 2  # and nowhere near a static split's pace


def test_an_unreachable_bank_fails_the_task_with_the_way_out() -> None:
    async def take() -> None:
        budget = SharedBudget("http://127.0.0.1:9", "t", "k", 60, deadline_s=0.3)
        try:
            await budget.take(1)
        finally:
            await budget.close()

    with pytest.raises(PermitsUnavailableError, match=r"aiquery\.coordinator\.host"):
        asyncio.run(take())


def test_returned_permits_go_back_to_the_bucket_up_to_its_capacity() -> None:
    clock = Clock()
    bank = PermitBank(clock)
    assert bank.grant("k", 600, 10) == 0.0  # the whole burst (10 at 10/s)
    assert bank.grant("k", 600, 4) == pytest.approx(0.4)
    assert bank.grant("k", 600, 0, returned=4) == 0.0  # 4 of them unused
    assert bank.grant("k", 600, 4) == 0.0
    assert bank.grant("k", 600, 0, returned=50) == 0.0  # never above the burst
    assert bank.grant("k", 600, 10) == 0.0
    assert bank.grant("k", 600, 1) == pytest.approx(0.1)


def test_a_closing_task_returns_its_lease_and_pays_its_last_debt(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens per minute, on a bank whose clock stands still: each task leases 50 units
    (50 ms of 1,000/s), is charged for what its answers took, and ends. The bank is left
    as if each had taken exactly what it used, however the answers fell."""
    bank = PermitBank(Clock())
    monkeypatch.setattr(coordinator_module, "BANK", bank)
    key = "settle-test|tokens"

    async def task(used: float) -> None:
        budget = SharedBudget(coordinator.url, coordinator.token, key, 60_000)
        try:
            await budget.take(1)  # one lease of 50
            budget.charge(used - 1)
        finally:
            await budget.close()

    asyncio.run(task(21))  # 29 of its 50 unused: returned
    asyncio.run(task(61))  # 11 more than its lease: owed
    assert bank.grant(key, 60_000, 1_000 - 21 - 61) == 0.0
    assert bank.grant(key, 60_000, 0.01) > 0.0
