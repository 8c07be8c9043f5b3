"""Job-wide rate limits: the driver's `PermitBank` (with a fake clock) and tasks' `SharedBudget`
leasing from it through the coordinator on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from aiquery.client.shared_rate import PermitBank, PermitsUnavailableError, SharedBudget
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
