"""Flow control for one Spark task's requests to one endpoint.

Separate knobs with separate primitives, all created on the loop that uses them:
- `AdaptiveConcurrency`: how many requests are in flight, under a ceiling: from a lower
  start it first doubles per round trip while the window is full (slow start), then AIMD
  (+1/limit per success, x0.7 on a 429 or a latency spike, at most once per cooldown);
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
        initial: int | None = None,
        floor: int = 1,
        decrease: float = 0.7,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ceiling < 1 or floor < 1 or (initial is not None and initial < 1):
            raise ValueError("ceiling, initial and floor must be >= 1")
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.limit = float(min(initial or ceiling, ceiling))
        # Slow start: +1 per success (the window doubles per round trip) up to twice the
        # most requests ever in flight at once, until the ceiling or the first sign of "too
        # much" (a 429, queueing). A task that never fills its window never grows it.
        self.starting = self.limit < ceiling
        self._filled = 0  # the most requests in flight at once while the window was full
        self.decrease = decrease
        self.in_flight = 0
        self.throttles = 0
        self._clock = clock
        self._last_decrease = -1e9
        self.latency = LatencyTrend(window=ceiling)
        self._changed = asyncio.Condition()

    @property
    def current(self) -> int:
        return max(self.floor, int(self.limit))

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.current)
            self.in_flight += 1
            if self.in_flight >= self.current:
                self._filled = max(self._filled, self.in_flight)

    async def release(self, *, throttled: bool, latency_s: float | None) -> None:
        """Give back a slot and adapt: grow while clean, shrink on throttling or a latency spike."""
        self.in_flight -= 1
        if throttled:
            self.throttles += 1
            self.starting = False
            self._shrink()
        elif latency_s is not None:
            if self.latency.queueing(latency_s):
                self.starting = False
                self._shrink()
            elif self.starting:
                # Answers often come back in waves (one round trip apart), all before any
                # waiting request takes a slot: growth is bounded by what was used, not by
                # whether the window is full at this instant.
                if self.limit + 1.0 <= 2 * self._filled:
                    self.limit = min(float(self.ceiling), self.limit + 1.0)
                    self.starting = self.limit < self.ceiling
            else:
                # Once throttled, probe for headroom ten times more slowly: the endpoint
                # has shown where its limit is, and each overshoot costs 429s.
                step = 0.1 if self.throttles else 1.0
                self.limit = min(float(self.ceiling), self.limit + step / self.limit)
        async with self._changed:
            # Wake only as many waiters as there are free slots: with a ceiling of hundreds,
            # waking every waiter on every answer would cost more CPU than the requests.
            self._changed.notify(max(0, self.current - self.in_flight))

    def _shrink(self) -> None:
        now = self._clock()
        # One decrease per cooldown: the in-flight requests of one burst all come back
        # throttled together, and halving once per request would collapse to the floor.
        cooldown = max(0.05, self.latency.recent)
        if now - self._last_decrease >= cooldown:
            self.limit = max(float(self.floor), self.limit * self.decrease)
            self._last_decrease = now


class LatencyTrend:
    """Is the endpoint queueing our requests? Recent latency against its long-run level.

    LLM latencies are long-tailed (an answer's length varies tenfold), so noise must not
    look like queueing: every false alarm cuts the window by 30%, and +1/limit per success
    takes thousands of requests to win a large window back. Hence:
    - the recent level averages over at least a window's worth of completions (about one
      round trip of every slot), never fewer than `min_window`;
    - the long-run level averages over ten times as many;
    - one sample counts for at most `clip` times the long-run level (one hung request is
      not a trend);
    - both are plain means until they have that many samples, and nothing is judged
      before the first window.
    Queueing is the recent level above `factor` times the long-run level. Measured on
    simulated exponential, lognormal (sigma 1.5) and Pareto (1.5) latencies: no false
    alarm in 100,000 requests each at windows of 64 and 512; a sustained tripling is seen
    within about two windows (`tests/unit/test_flow_control.py`).
    """

    def __init__(
        self, window: int, *, min_window: int = 64, factor: float = 2.0, clip: float = 10.0
    ) -> None:
        self.window = max(min_window, window)
        self.factor = factor
        self.clip = clip
        self.samples = 0
        self.recent = 0.0
        self.long_run = 0.0

    def queueing(self, latency_s: float) -> bool:
        """Take one request's latency; True while recent latency says the endpoint queues."""
        self.samples += 1
        if self.samples > 1:
            latency_s = min(latency_s, self.clip * self.long_run)
        recent = max(2.0 / (self.window + 1), 1.0 / self.samples)
        long_run = max(2.0 / (10 * self.window + 1), 1.0 / self.samples)
        self.recent += recent * (latency_s - self.recent)
        self.long_run += long_run * (latency_s - self.long_run)
        return (
            self.samples >= self.window
            and self.long_run > 0.005
            and self.recent > self.factor * self.long_run
        )


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
