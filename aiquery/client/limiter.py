"""Flow control for one Spark task's requests to one endpoint.

Separate knobs with separate primitives, all created on the loop that uses them:
- `AdaptiveConcurrency`: how many requests are in flight (AIMD: +1/limit per success,
  x0.7 on a 429 or a latency spike, at most once per cooldown), under a ceiling;
- `AdaptiveRate`: how many requests start per second, once the endpoint has said 429
  (x0.7 of the measured send rate per 429, cubic regrowth while requests succeed). Concurrency
  alone cannot slow a client down when the server refuses in a millisecond: one slot
  turns over a thousand times a second, a 429 storm amplifier;
- `RateBudget`: requests/min and tokens/min, leaky buckets that wait instead of refusing;
- `CircuitBreaker`: stops a task that gets nothing but the same terminal error.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

Sleep = Callable[[float], Awaitable[None]]


class AdaptiveConcurrency:
    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = 1,
        decrease: float = 0.7,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ceiling < 1 or floor < 1:
            raise ValueError("ceiling and floor must be >= 1")
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.limit = float(ceiling)
        self.decrease = decrease
        self.in_flight = 0
        self.throttles = 0
        self._clock = clock
        self._last_decrease = -1e9
        self._short_latency: float | None = None
        self._long_latency: float | None = None
        self._changed = asyncio.Condition()

    @property
    def current(self) -> int:
        return max(self.floor, int(self.limit))

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.current)
            self.in_flight += 1

    async def release(self, *, throttled: bool, latency_s: float | None) -> None:
        """Give back a slot and adapt: grow while clean, shrink on throttling or a latency spike."""
        self.in_flight -= 1
        if throttled:
            self.throttles += 1
            self._shrink()
        elif latency_s is not None:
            if self._latency_spike(latency_s):
                self._shrink()
            else:
                # Once throttled, probe for headroom ten times more slowly: the endpoint
                # has shown where its limit is, and each overshoot costs 429s.
                step = 0.1 if self.throttles else 1.0
                self.limit = min(float(self.ceiling), self.limit + step / self.limit)
        async with self._changed:
            self._changed.notify_all()

    def _latency_spike(self, latency_s: float) -> bool:
        # Two moving averages: a sustained doubling of recent latency over the long-run
        # level means the endpoint is queueing our requests; back off before it throttles.
        short, long = self._short_latency, self._long_latency
        self._short_latency = latency_s if short is None else 0.9 * short + 0.1 * latency_s
        self._long_latency = latency_s if long is None else 0.99 * long + 0.01 * latency_s
        return (
            long is not None
            and self._long_latency > 0.005
            and self._short_latency > 2.0 * self._long_latency
        )

    def _shrink(self) -> None:
        now = self._clock()
        # One decrease per cooldown: the in-flight requests of one burst all come back
        # throttled together, and halving once per request would collapse to the floor.
        cooldown = max(0.05, self._short_latency or 0.0)
        if now - self._last_decrease >= cooldown:
            self.limit = max(float(self.floor), self.limit * self.decrease)
            self._last_decrease = now


class AdaptiveRate:
    """Paces request starts after the endpoint throttles; unpaced until the first 429.

    On a 429 (at most once per cooldown) the rate becomes 70% of what was really sent in
    the last second, or of the current rate if lower. Between 429s it regrows along a
    cubic curve in time (as TCP CUBIC and the AWS SDKs' adaptive retry mode do): back to
    the rate of the last cut within K = cbrt(0.3 * rate / scale) seconds, flat near it
    (where the limit probably is), then probing faster and faster beyond it. After a 429
    storm that drove the rate to a trickle, it is back to full speed in seconds, not
    minutes. It grows only as requests succeed, and never past twice the measured send
    rate, so a quiet spell cannot build up a rate that would let a burst through.
    """

    def __init__(
        self,
        *,
        decrease: float = 0.7,
        scale: float = 0.4,  # requests/s per s^3
        floor: float = 0.5,
        cooldown_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rate: float | None = None  # requests per second; None: not pacing
        self.decrease = decrease
        self.scale = scale
        self.floor = floor
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0  # the earliest start of the next request
        self._sent: deque[float] = deque()  # start times within the last second
        self._last_decrease = -1e9
        self._rate_at_cut = 0.0
        self._k = 0.0  # seconds from a cut back to the rate at the cut

    def _measured(self, now: float) -> float:
        while self._sent and self._sent[0] <= now - 1.0:
            self._sent.popleft()
        return float(len(self._sent))

    async def wait(self) -> None:
        """Wait for this request's turn, then count it as sent."""
        if self.rate is not None:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + 1.0 / self.rate  # reserved before sleeping: FIFO spacing
            if start > now:
                await self._sleep(start - now)
        now = self._clock()
        self._measured(now)
        self._sent.append(now)

    def throttled(self) -> None:
        now = self._clock()
        if now - self._last_decrease < self.cooldown_s:
            return  # the rest of the burst that overshot, answered together
        self._last_decrease = now
        sent = self._measured(now)
        before = sent if self.rate is None else min(self.rate, max(sent, self.floor))
        self._rate_at_cut = max(self.floor, before)
        self.rate = max(self.floor, before * self.decrease)
        self._k = (self._rate_at_cut * (1.0 - self.decrease) / self.scale) ** (1.0 / 3.0)
        self._next = max(self._next, now + 1.0 / self.rate)

    def succeeded(self) -> None:
        if self.rate is None:
            return
        now = self._clock()
        since = now - self._last_decrease - self._k
        target = self._rate_at_cut + self.scale * since**3
        ceiling = max(self._rate_at_cut, 2.0 * self._measured(now))
        self.rate = max(self.rate, min(target, ceiling))


class Budget(Protocol):
    """Requests or tokens per minute: `RateBudget` in one task, or `SharedBudget` job-wide."""

    async def take(self, amount: float = 1.0) -> None: ...

    def charge(self, amount: float) -> None: ...


class RateBudget:
    """A leaky bucket of `per_minute` units that waits for capacity (one second of burst)."""

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be > 0")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self._level = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: float = 1.0) -> None:
        """Wait until the bucket holds `amount`, then take it.

        A request larger than the burst capacity takes a full bucket and then waits out
        the rest before it goes, so no window of a second or more exceeds the rate.
        """
        async with self._lock:  # first come, first served
            await self._wait_for(min(amount, self.capacity))
            self._level -= amount
            await self._wait_for(0.0)

    async def _wait_for(self, level: float) -> None:
        self._refill()
        # A tolerance: float refills can stop a hair short of the exact level.
        while level - self._level > 1e-9:
            await self._sleep(max((level - self._level) / self.rate, 1e-6))
            self._refill()

    def charge(self, amount: float) -> None:
        """Usage known only afterwards (output tokens); the level may go negative."""
        self._refill()
        self._level -= amount


class CircuitBreaker:
    """Trips when the same terminal error repeats with nothing succeeding in between.

    Before the task's first success, `threshold` identical failures trip it (a bad token,
    a deleted endpoint, a request the server always refuses); after a success it takes ten
    times as many, so a few bad rows in a good job do not stop it.
    """

    def __init__(self, threshold: int = 5) -> None:
        self.threshold = threshold
        self.succeeded = False
        self._streak_key: tuple[int, str] | None = None
        self._streak = 0
        self.tripped: Exception | None = None

    def success(self) -> None:
        self.succeeded = True
        self._streak_key, self._streak = None, 0

    def terminal_failure(self, status: int, code: str, error: Exception) -> None:
        key = (status, code)
        self._streak = self._streak + 1 if key == self._streak_key else 1
        self._streak_key = key
        needed = self.threshold * (10 if self.succeeded else 1)
        if self._streak >= needed and self.tripped is None:
            self.tripped = error
