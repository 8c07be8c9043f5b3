"""Retry policy and flow control, driven by injected clocks, sleeps and RNGs (nothing really waits)."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from multidict import CIMultiDict

from aiquery.client.limiter import AdaptiveConcurrency, CircuitBreaker, LatencyTrend, RateBudget
from aiquery.client.retry import RetryPolicy, is_retryable, retry_after_s, retry_delay

T = TypeVar("T")
SEEDS = range(300)


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout=2.0)  # a hang fails, it does not stall CI

    return asyncio.run(bounded())


class FakeTime:
    """A clock plus an async sleep that advances it instead of waiting.

    Like a real timer, a sleep advances the clock by at least `resolution` (see
    `test_a_take_terminates_even_when_sleeps_are_exact` for why that matters).
    """

    def __init__(self, resolution: float = 1e-6, max_sleeps: int = 10_000) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.resolution = resolution
        self.max_sleeps = max_sleeps

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        assert len(self.sleeps) <= self.max_sleeps, "sleeping in a loop that makes no progress"
        self.now += max(seconds, self.resolution)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(10):
        await asyncio.sleep(0)


# --- which failures are retried -------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, None])
def test_transient_statuses_and_no_answer_are_retried(status: int | None) -> None:
    assert is_retryable(status)


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 413, 422, 501])
def test_client_errors_are_terminal(status: int) -> None:
    assert not is_retryable(status)


# --- what the server asked for ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "0.25"}, 0.25),
        ({"Retry-After": "0"}, 0.0),
        ({"retry-after-ms": "250", "Retry-After": "7"}, 0.25),  # the precise one wins
    ],
)
def test_server_retry_after_is_read_in_seconds(headers: dict[str, str], seconds: float) -> None:
    assert retry_after_s(headers) == pytest.approx(seconds)


@pytest.mark.parametrize("bad_ms", ["soon", "-5", "nan", ""])
def test_a_bad_retry_after_ms_falls_back_to_retry_after(bad_ms: str) -> None:
    assert retry_after_s({"retry-after-ms": bad_ms, "Retry-After": "2"}) == 2.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Retry-After": "Wed, 21 Oct 2015 07:28:00"},  # an HTTP date must be in GMT
        {"Retry-After": "the 21st of October"},
        {"Retry-After": "-1"},
        {"retry-after-ms": "later", "Retry-After": "never"},
    ],
)
def test_no_usable_retry_after_means_no_server_delay(headers: dict[str, str]) -> None:
    assert retry_after_s(headers) is None


def test_retry_after_is_found_in_case_insensitive_response_headers() -> None:
    # The client hands over aiohttp's headers, which match names regardless of case.
    assert retry_after_s(CIMultiDict({"RETRY-AFTER-MS": "40"})) == pytest.approx(0.04)
    assert retry_after_s(CIMultiDict({"retry-after": "5"})) == 5.0


# --- how long to wait -------------------------------------------------------------------------


@pytest.mark.parametrize("server_s", [0.0, 0.2, 2.0, 30.0])
def test_a_server_delay_is_honoured_with_a_little_jitter(server_s: float) -> None:
    policy = RetryPolicy()
    jitter = min(1.0, 0.1 * server_s + 0.05)
    delays = [retry_delay(policy, 1, server_s, random.Random(seed)) for seed in SEEDS]
    assert all(server_s <= d <= server_s + jitter for d in delays)
    assert max(delays) - min(delays) > jitter / 2  # really jittered, not a constant offset


@pytest.mark.parametrize("attempt", [1, 5])
def test_a_server_delay_does_not_depend_on_the_attempt(attempt: int) -> None:
    delays = [retry_delay(RetryPolicy(), attempt, 4.0, random.Random(s)) for s in SEEDS]
    assert all(4.0 <= d <= 4.45 for d in delays)


@pytest.mark.parametrize(
    ("policy", "server_s", "cap"),
    [
        (RetryPolicy(), 3600.0, 120.0),
        (RetryPolicy(), math.inf, 120.0),
        (RetryPolicy(max_retry_after_s=5.0), 60.0, 5.0),
    ],
)
def test_a_long_server_delay_is_capped(policy: RetryPolicy, server_s: float, cap: float) -> None:
    jitter = min(1.0, 0.1 * cap + 0.05)
    delays = [retry_delay(policy, 1, server_s, random.Random(seed)) for seed in SEEDS]
    assert all(cap <= d <= cap + jitter for d in delays)


def test_backoff_is_full_jitter_under_a_doubling_ceiling() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=30.0)
    for attempt in range(1, 10):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        delays = [retry_delay(policy, attempt, None, random.Random(seed)) for seed in SEEDS]
        assert all(0.0 <= d <= ceiling for d in delays), attempt
        # Full jitter: the whole range from (almost) nothing to (almost) the ceiling is used.
        assert min(delays) < 0.05 * ceiling, attempt
        assert max(delays) > 0.95 * ceiling, attempt


def test_backoff_grows_with_the_attempt_until_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)

    def mean_delay(attempt: int) -> float:
        delays = [retry_delay(policy, attempt, None, random.Random(seed)) for seed in SEEDS]
        return sum(delays) / len(delays)

    means = [mean_delay(attempt) for attempt in range(1, 8)]
    # Ceilings 0.5, 1, 2, 4, then the 4 s cap: the mean of a uniform draw is half of it.
    assert means[:4] == pytest.approx([0.25, 0.5, 1.0, 2.0], rel=0.15)
    assert means[4:] == pytest.approx([2.0, 2.0, 2.0], rel=0.15)


def test_the_same_rng_state_gives_the_same_delay() -> None:
    policy = RetryPolicy()
    assert retry_delay(policy, 3, None, random.Random(7)) == retry_delay(
        policy, 3, None, random.Random(7)
    )


def test_a_zero_delay_policy_never_waits() -> None:
    policy = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0)
    assert {retry_delay(policy, a, None, random.Random(a)) for a in range(1, 6)} == {0.0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"base_delay_s": -0.1},
        {"base_delay_s": 2.0, "max_delay_s": 1.0},
    ],
)
def test_an_invalid_policy_is_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_a_single_attempt_policy_is_valid() -> None:
    assert RetryPolicy(max_attempts=1).max_attempts == 1


# --- adaptive concurrency -------------------------------------------------------------------


def make_concurrency(ceiling: int = 10, floor: int = 1) -> tuple[AdaptiveConcurrency, FakeTime]:
    time = FakeTime()
    return AdaptiveConcurrency(ceiling, floor=floor, clock=time.clock), time


def test_concurrency_starts_at_the_ceiling() -> None:
    limiter, _ = make_concurrency(ceiling=12)
    assert (limiter.limit, limiter.current, limiter.in_flight) == (12.0, 12, 0)


def test_success_at_the_ceiling_does_not_raise_it() -> None:
    async def main() -> None:
        limiter, _ = make_concurrency(ceiling=4)
        for _ in range(20):
            await limiter.acquire()
            await limiter.release(throttled=False, latency_s=0.1)
        assert limiter.limit == 4.0

    run(main)


def test_a_throttled_response_shrinks_the_limit_by_thirty_percent() -> None:
    async def main() -> None:
        limiter, _ = make_concurrency(ceiling=10)
        await limiter.acquire()
        await limiter.release(throttled=True, latency_s=0.1)
        assert limiter.limit == pytest.approx(7.0)
        assert limiter.current == 7
        assert limiter.throttles == 1

    run(main)


def test_throttling_shrinks_at_most_once_per_cooldown() -> None:
    async def main() -> None:
        limiter, time = make_concurrency(ceiling=10)
        for _ in range(5):  # a burst coming back throttled together
            await limiter.acquire()
        for _ in range(5):
            await limiter.release(throttled=True, latency_s=None)
        assert limiter.limit == pytest.approx(7.0)
        assert limiter.throttles == 5

        time.now += 0.04  # still inside the 50 ms cooldown
        await limiter.acquire()
        await limiter.release(throttled=True, latency_s=None)
        assert limiter.limit == pytest.approx(7.0)

        time.now += 0.02  # 60 ms after the last decrease
        await limiter.acquire()
        await limiter.release(throttled=True, latency_s=None)
        assert limiter.limit == pytest.approx(4.9)

    run(main)


def test_success_grows_the_limit_slowly_after_a_throttle_up_to_the_ceiling() -> None:
    async def main() -> None:
        limiter, _ = make_concurrency(ceiling=10)
        await limiter.acquire()
        await limiter.release(throttled=True, latency_s=0.1)
        assert limiter.limit == pytest.approx(7.0)
        await limiter.acquire()
        await limiter.release(throttled=False, latency_s=0.1)
        # Once the endpoint has throttled, probing is ten times slower than 1/limit.
        assert limiter.limit == pytest.approx(7.0 + 0.1 / 7.0)
        for _ in range(1000):  # steady latency: no spike, just growth
            await limiter.acquire()
            await limiter.release(throttled=False, latency_s=0.1)
        assert limiter.limit == 10.0

    run(main)


def test_before_any_throttle_success_grows_by_one_over_the_limit() -> None:
    async def main() -> None:
        limiter, _ = make_concurrency(ceiling=10)
        limiter.limit = 4.0  # as if it started low
        await limiter.acquire()
        await limiter.release(throttled=False, latency_s=0.1)
        assert limiter.limit == pytest.approx(4.25)

    run(main)


def test_an_attempt_without_an_answer_neither_grows_nor_shrinks_the_limit() -> None:
    async def main() -> None:
        limiter, _ = make_concurrency(ceiling=10)
        await limiter.acquire()
        await limiter.release(throttled=True, latency_s=None)
        await limiter.acquire()
        await limiter.release(throttled=False, latency_s=None)
        assert limiter.limit == pytest.approx(7.0)

    run(main)


def test_throttling_never_takes_the_limit_below_the_floor() -> None:
    async def main() -> None:
        limiter, time = make_concurrency(ceiling=10, floor=3)
        for _ in range(20):
            time.now += 1.0
            await limiter.acquire()
            await limiter.release(throttled=True, latency_s=None)
        assert limiter.limit == 3.0
        assert limiter.current == 3

    run(main)


def test_a_floor_above_the_ceiling_is_clamped_to_it() -> None:
    limiter, _ = make_concurrency(ceiling=2, floor=5)
    assert (limiter.floor, limiter.current) == (2, 2)


def test_a_ceiling_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="ceiling"):
        AdaptiveConcurrency(0)


def test_a_sustained_latency_spike_shrinks_the_limit() -> None:
    async def main() -> None:
        limiter, time = make_concurrency(ceiling=10)
        for _ in range(200):  # establish the long-run level (over more than a window)
            time.now += 1.0
            await limiter.acquire()
            await limiter.release(throttled=False, latency_s=0.1)
        assert limiter.limit == 10.0
        for _ in range(40):  # the endpoint starts queueing: latency jumps tenfold
            time.now += 1.0
            await limiter.acquire()
            await limiter.release(throttled=False, latency_s=1.0)
        assert limiter.limit < 10.0
        assert limiter.throttles == 0  # latency, not 429s, did it

    run(main)


# Long-tailed latencies, each with mean 1 (an LLM's answer length varies tenfold).
TAILS: dict[str, Callable[[random.Random], float]] = {
    "exponential": lambda rng: rng.expovariate(1.0),
    "lognormal sigma 1.5": lambda rng: rng.lognormvariate(0.0, 1.5) / math.exp(1.5**2 / 2),
    "pareto 1.5": lambda rng: rng.paretovariate(1.5) / 3.0,
}


@pytest.mark.parametrize("tail", sorted(TAILS))
@pytest.mark.parametrize("window", [64, 512])
def test_long_tailed_latency_is_not_mistaken_for_queueing(tail: str, window: int) -> None:
    draw = TAILS[tail]
    for seed in range(2):
        rng, trend = random.Random(seed), LatencyTrend(window)
        alarms = sum(trend.queueing(0.1 * draw(rng)) for _ in range(50_000))
        assert alarms == 0, f"{tail}, seed {seed}: {alarms} false alarms"


@pytest.mark.parametrize("window", [10, 64, 512])
def test_a_sustained_tripling_of_latency_is_seen_within_two_windows(window: int) -> None:
    rng, trend = random.Random(7), LatencyTrend(window)
    for _ in range(20 * trend.window):
        assert not trend.queueing(rng.expovariate(10.0))  # mean 100 ms
    seen = next(
        (n for n in range(1, 10 * trend.window) if trend.queueing(rng.expovariate(10.0 / 3))),
        None,
    )
    assert seen is not None and seen <= 2 * trend.window, seen


def test_one_hung_request_is_not_a_trend() -> None:
    trend = LatencyTrend(64)
    for _ in range(1000):
        trend.queueing(0.1)
    assert not trend.queueing(300.0)  # a timeout counts as ten times the long-run level
    assert trend.recent < 0.2


def test_exponential_latency_keeps_the_window_at_the_ceiling() -> None:
    """The tail case of issue 16: noise alone must never cut the window (each cut cost
    thousands of requests of throughput before this was fixed)."""

    async def main() -> None:
        limiter, time = make_concurrency(ceiling=64)
        rng, lowest = random.Random(3), 64
        for _ in range(20_000):
            time.now += 0.1 / 64
            await limiter.acquire()
            await limiter.release(throttled=False, latency_s=rng.expovariate(10.0))
            lowest = min(lowest, limiter.current)
        assert lowest == 64

    run(main)


def test_slow_start_doubles_a_full_window_per_round_trip_up_to_the_ceiling() -> None:
    async def main() -> None:
        limiter = AdaptiveConcurrency(512, initial=64)

        async def fill() -> None:  # a backlog: a request takes every free slot at once
            while limiter.in_flight < limiter.current:
                await limiter.acquire()

        sizes = []
        await fill()
        while limiter.current < 512:
            for _ in range(limiter.current):  # one round trip: the window's answers
                await limiter.release(throttled=False, latency_s=0.1)
                await fill()
            sizes.append(limiter.current)
        assert sizes == [128, 256, 512]
        assert not limiter.starting

    run(main)


def test_slow_start_doubles_when_answers_come_back_in_waves() -> None:
    """Fixed latency: a round trip's answers all arrive before any waiting request runs."""

    async def main() -> None:
        limiter = AdaptiveConcurrency(512, initial=64)
        sizes = []
        while limiter.current < 512:
            window = limiter.current
            for _ in range(window):  # the backlog fills the window
                await limiter.acquire()
            for _ in range(window):  # one wave of answers, back to back
                await limiter.release(throttled=False, latency_s=2.0)
            sizes.append(limiter.current)
        assert sizes == [128, 256, 512]

    run(main)


def test_slow_start_does_not_grow_a_window_the_task_does_not_fill() -> None:
    async def main() -> None:
        limiter = AdaptiveConcurrency(512, initial=64)
        for _ in range(1000):  # ten rows at a time: never more than ten in flight
            for _ in range(10):
                await limiter.acquire()
            for _ in range(10):
                await limiter.release(throttled=False, latency_s=0.1)
        assert limiter.current == 64

    run(main)


def test_a_throttle_ends_slow_start_and_growth_is_additive_after_it() -> None:
    async def main() -> None:
        limiter = AdaptiveConcurrency(512, initial=64)
        for _ in range(64):
            await limiter.acquire()
        await limiter.release(throttled=True, latency_s=0.1)
        assert (limiter.current, limiter.starting) == (44, False)
        for _ in range(63):  # the rest of the window answered: AIMD, after a 429 slowly
            await limiter.release(throttled=False, latency_s=0.1)
        assert 44.8 < limiter.limit < 46  # slow start would have added 63

    run(main)


def test_a_start_above_the_ceiling_is_the_ceiling() -> None:
    limiter = AdaptiveConcurrency(8, initial=64)
    assert (limiter.current, limiter.starting) == (8, False)


def test_waiters_take_exactly_the_slots_that_free_up() -> None:
    # A release wakes as many waiters as there are free slots (not all of them): none may
    # be left waiting beside a free slot, and none may get in beyond the limit.
    async def main() -> None:
        limiter = AdaptiveConcurrency(4)
        for _ in range(4):
            await limiter.acquire()
        waiting = [asyncio.create_task(limiter.acquire()) for _ in range(50)]
        await settle()
        await limiter.release(throttled=False, latency_s=0.1)
        await settle()
        assert sum(t.done() for t in waiting) == 1 and limiter.in_flight == 4
        for _ in range(3):
            await limiter.release(throttled=False, latency_s=0.1)
        await settle()
        assert sum(t.done() for t in waiting) == 4 and limiter.in_flight == 4
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)

    run(main)


def test_acquire_waits_at_the_limit_and_resumes_on_release() -> None:
    async def main() -> None:
        limiter, _ = make_concurrency(ceiling=2)
        await limiter.acquire()
        await limiter.acquire()
        waiting = asyncio.create_task(limiter.acquire())
        await settle()
        assert not waiting.done()
        assert limiter.in_flight == 2

        await limiter.release(throttled=False, latency_s=0.1)
        await asyncio.wait_for(waiting, timeout=1.0)
        assert limiter.in_flight == 2

    run(main)


def test_after_a_shrink_new_requests_wait_until_in_flight_drops_below_the_new_limit() -> None:
    async def main() -> None:
        limiter, _ = make_concurrency(ceiling=4)
        for _ in range(4):
            await limiter.acquire()
        await limiter.release(throttled=True, latency_s=None)  # limit 4 -> 2.8, in flight 3
        assert limiter.current == 2
        waiting = asyncio.create_task(limiter.acquire())
        await settle()
        assert not waiting.done()

        await limiter.release(throttled=True, latency_s=None)  # in flight 2: still full
        await settle()
        assert not waiting.done()

        await limiter.release(throttled=False, latency_s=None)  # in flight 1: room for one
        await asyncio.wait_for(waiting, timeout=1.0)
        assert limiter.in_flight == 2

    run(main)


def test_many_tasks_never_exceed_the_limit() -> None:
    async def main() -> int:
        limiter, _ = make_concurrency(ceiling=3)
        peak = 0

        async def request() -> None:
            nonlocal peak
            await limiter.acquire()
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0)
            await limiter.release(throttled=False, latency_s=0.01)

        await asyncio.gather(*(request() for _ in range(30)))
        assert limiter.in_flight == 0
        return peak

    assert run(main) == 3


# --- rate budget ------------------------------------------------------------------------------


def make_budget(per_minute: float) -> tuple[RateBudget, FakeTime]:
    time = FakeTime()
    return RateBudget(per_minute, clock=time.clock, sleep=time.sleep), time


@pytest.mark.parametrize(
    ("per_minute", "units", "expected_s"),
    [
        (120, 10, 4.0),  # 2/s with a burst of 2: 8 units wait, 0.5 s each
        (600, 50, 4.0),  # 10/s, burst of 10
        (30, 3, 4.0),  # 0.5/s: burst of one unit, then 2 s per unit
        (6000, 100, 0.0),  # 100/s: one second of burst covers it
    ],
)
def test_taking_units_one_at_a_time_proceeds_at_the_rate(
    per_minute: float, units: int, expected_s: float
) -> None:
    async def main() -> float:
        budget, time = make_budget(per_minute)
        for _ in range(units):
            await budget.take()
        return time.now

    assert run(main) == pytest.approx(expected_s)


def test_burst_capacity_is_one_second_of_rate_even_after_a_long_idle() -> None:
    async def main() -> None:
        budget, time = make_budget(600)  # 10/s
        time.now += 3600.0
        await budget.take(10)
        assert time.sleeps == []
        await budget.take(1)
        assert sum(time.sleeps) == pytest.approx(0.1)

    run(main)


def test_a_take_waits_only_for_the_shortfall() -> None:
    async def main() -> None:
        budget, time = make_budget(600)  # 10/s, burst 10
        await budget.take(6)
        time.now += 0.2  # two units refill: four + two = six available
        await budget.take(8)
        assert sum(time.sleeps) == pytest.approx(0.2)

    run(main)


def test_a_charge_puts_the_budget_in_debt_that_delays_the_next_take() -> None:
    async def main() -> None:
        budget, time = make_budget(60)  # 1/s, burst 1
        await budget.take()
        budget.charge(5)
        assert time.sleeps == []  # charging never waits
        await budget.take()
        assert time.now == pytest.approx(6.0)

    run(main)


def test_concurrent_takers_are_served_in_arrival_order_at_the_rate() -> None:
    async def main() -> list[tuple[int, float]]:
        budget, time = make_budget(60)  # 1/s, burst 1
        served: list[tuple[int, float]] = []

        async def taker(i: int) -> None:
            await budget.take()
            served.append((i, time.now))

        await asyncio.gather(*(taker(i) for i in range(4)))
        return served

    served = run(main)
    assert [i for i, _ in served] == [0, 1, 2, 3]
    assert [t for _, t in served] == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_a_take_larger_than_the_burst_is_paid_in_full() -> None:
    async def main() -> float:
        budget, time = make_budget(600)  # 10/s, burst 10
        await budget.take(30)
        await budget.take(30)
        return time.now

    # 60 units at 10/s with 10 free: at least 5 s must pass before the second take returns.
    assert run(main) >= 5.0 - 1e-9


def test_a_take_terminates_even_when_sleeps_are_exact() -> None:
    async def main() -> float:
        time = FakeTime(resolution=0.0, max_sleeps=1000)
        budget = RateBudget(600, clock=time.clock, sleep=time.sleep)  # 10/s, burst 10
        for _ in range(50):
            await budget.take()
        return time.now

    assert run(main) == pytest.approx(4.0)


@pytest.mark.parametrize("per_minute", [0, -60])
def test_a_non_positive_rate_is_rejected(per_minute: float) -> None:
    with pytest.raises(ValueError, match="per_minute"):
        RateBudget(per_minute)


# --- circuit breaker --------------------------------------------------------------------------


def fail(breaker: CircuitBreaker, status: int = 401, code: str = "UNAUTHENTICATED") -> Exception:
    error = RuntimeError(f"{status} {code}")
    breaker.terminal_failure(status, code, error)
    return error


def test_the_breaker_trips_after_threshold_identical_failures_before_any_success() -> None:
    breaker = CircuitBreaker(threshold=3)
    fail(breaker)
    fail(breaker)
    assert breaker.tripped is None
    third = fail(breaker)
    assert breaker.tripped is third


def test_a_tripped_breaker_keeps_the_error_that_tripped_it() -> None:
    breaker = CircuitBreaker(threshold=2)
    fail(breaker)
    tripping = fail(breaker)
    fail(breaker)
    fail(breaker, 404, "ENDPOINT_NOT_FOUND")
    assert breaker.tripped is tripping


def test_the_default_threshold_is_five() -> None:
    breaker = CircuitBreaker()
    for _ in range(4):
        fail(breaker)
    assert breaker.tripped is None
    fail(breaker)
    assert breaker.tripped is not None


@pytest.mark.parametrize(
    "other",
    [(403, "UNAUTHENTICATED"), (401, "PERMISSION_DENIED")],
    ids=["other-status", "other-code"],
)
def test_a_different_error_restarts_the_streak(other: tuple[int, str]) -> None:
    breaker = CircuitBreaker(threshold=3)
    fail(breaker)
    fail(breaker)
    fail(breaker, *other)
    fail(breaker)
    fail(breaker)
    assert breaker.tripped is None
    fail(breaker)
    assert breaker.tripped is not None


def test_after_a_success_it_takes_ten_times_the_threshold_to_trip() -> None:
    breaker = CircuitBreaker(threshold=2)
    fail(breaker)
    breaker.success()  # also ends the streak
    for _ in range(19):
        fail(breaker)
    assert breaker.tripped is None
    fail(breaker)
    assert breaker.tripped is not None


def test_a_success_ends_the_streak() -> None:
    breaker = CircuitBreaker(threshold=3)
    fail(breaker)
    fail(breaker)
    breaker.success()
    for _ in range(29):
        fail(breaker)
    assert breaker.tripped is None
