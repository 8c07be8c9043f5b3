"""The adaptive request rate: unpaced until a 429, then 70% of what was sent, regrown cubically.

Driven by a fake clock whose sleep advances it, so nothing really waits.
"""

from __future__ import annotations

import asyncio

import pytest

from aiquery.client.limiter import AdaptiveRate


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def make() -> tuple[AdaptiveRate, FakeTime]:
    time = FakeTime()
    return AdaptiveRate(clock=time.clock, sleep=time.sleep), time


def send(rate: AdaptiveRate, n: int, spacing_s: float, time: FakeTime) -> None:
    async def main() -> None:
        for _ in range(n):
            await rate.wait()
            time.now += spacing_s

    asyncio.run(main())


def test_nothing_is_paced_before_the_first_429() -> None:
    rate, time = make()
    send(rate, 500, 0.0, time)
    assert rate.rate is None and time.slept == 0.0


def test_a_429_paces_at_seventy_percent_of_what_was_sent_in_the_last_second() -> None:
    rate, time = make()
    send(rate, 1000, 0.001, time)  # 1,000 requests in the last second
    rate.throttled()
    assert rate.rate == pytest.approx(700, rel=0.01)


def test_paced_requests_start_one_interval_apart() -> None:
    rate, time = make()
    send(rate, 10, 0.1, time)  # 10/s
    rate.throttled()  # 7/s
    start = time.now
    send(rate, 8, 0.0, time)
    assert time.now - start == pytest.approx(8 / 7, rel=0.01)


def test_a_burst_of_429s_cuts_the_rate_once_per_cooldown() -> None:
    rate, time = make()
    send(rate, 100, 0.01, time)
    for _ in range(50):  # the whole burst answered 429 at the same moment
        rate.throttled()
    assert rate.rate == pytest.approx(70, rel=0.02)
    time.now += rate.cooldown_s
    rate.throttled()
    assert rate.rate == pytest.approx(49, rel=0.02)


def test_a_429_storm_drives_the_rate_down_to_the_floor_not_to_zero() -> None:
    rate, time = make()
    send(rate, 10, 0.1, time)
    for _ in range(100):
        rate.throttled()
        time.now += rate.cooldown_s
    assert rate.rate == rate.floor


def answer_for(rate: AdaptiveRate, time: FakeTime, seconds: float) -> None:
    """Requests succeed back to back at the paced rate for `seconds`."""

    async def main() -> None:
        end = time.now + seconds
        while time.now < end:
            await rate.wait()
            rate.succeeded()

    asyncio.run(main())


def test_after_a_cut_the_rate_is_back_within_k_seconds_then_probes_beyond() -> None:
    rate, time = make()
    send(rate, 100, 0.01, time)  # 100/s
    rate.throttled()  # 70/s; K = cbrt(100 * 0.3 / 0.4) = 4.2 s
    answer_for(rate, time, 2.0)
    assert rate.rate is not None and 70 < rate.rate < 100  # concave: rising, below the cut
    answer_for(rate, time, 2.5)
    assert rate.rate == pytest.approx(100, rel=0.05)  # flat near the old rate
    answer_for(rate, time, 4.0)
    assert rate.rate > 110  # then probing past it


def test_a_429_storm_is_recovered_from_in_seconds_not_minutes() -> None:
    rate, time = make()
    send(rate, 200, 0.005, time)  # 200/s
    for _ in range(15):  # a storm cuts it to a trickle
        rate.throttled()
        time.now += rate.cooldown_s
        send(rate, 1, 0.0, time)
    assert rate.rate is not None and rate.rate < 2
    answer_for(rate, time, 12.0)
    assert rate.rate > 200


def test_without_traffic_the_rate_never_probes_past_the_last_cut() -> None:
    rate, time = make()
    send(rate, 100, 0.01, time)  # ~100/s
    rate.throttled()
    time.now += 60.0  # a quiet spell: nothing sent in the last second
    for _ in range(10_000):
        rate.succeeded()
    assert rate.rate is not None and rate.rate <= 100  # not the ~70,000/s the curve says


def test_without_a_429_success_changes_nothing() -> None:
    rate, time = make()
    send(rate, 10, 0.01, time)
    rate.succeeded()
    assert rate.rate is None
