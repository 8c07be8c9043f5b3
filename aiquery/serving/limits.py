"""Capacity limits and fault draws of one emulated endpoint.

Rate limits are token buckets refilled continuously at `limit / 60` per second with one
second of burst, so a client that paces itself at the limit is never refused while a
client that bursts past it gets 429 with a `Retry-After` that says when capacity returns.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiquery.serving.config import Faults


class TokenBucket:
    """A leaky bucket of `per_minute` units with one second of burst capacity."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self._level = self.capacity
        self._clock = clock
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_take(self, amount: float) -> float:
        """Take `amount` and return 0, or take nothing and return seconds until it would fit."""
        self._refill()
        amount = min(
            amount, self.capacity
        )  # a request bigger than the burst waits for a full bucket
        if self._level >= amount:
            self._level -= amount
            return 0.0
        return (amount - self._level) / self.rate

    def charge(self, amount: float) -> None:
        """Charge usage known only afterwards (output tokens); the level may go negative."""
        self._refill()
        self._level -= amount


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    retry_after_s: float


class EndpointLimits:
    """Live limiter state for one endpoint; rebuilt whenever its `Faults` change."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)  # fault draws
        # Latencies have their own stream: a request's fault is drawn after its latency has
        # passed, in whatever order concurrent requests finish, so with one stream a seed
        # would not repeat the latencies. With two, the k-th arrival's latency is the same
        # in every run (benchmarks compare clients on the same draws).
        self.latency_rng = random.Random(None if faults.seed is None else f"latency {faults.seed}")
        self.requests = (
            TokenBucket(faults.requests_per_minute) if faults.requests_per_minute else None
        )
        self.tokens = TokenBucket(faults.tokens_per_minute) if faults.tokens_per_minute else None
        self.in_flight = 0
        self._slots = (
            asyncio.Semaphore(faults.max_concurrency)
            if faults.max_concurrency and faults.overflow == "queue"
            else None
        )

    def admit(self, input_tokens: int) -> Refusal | None:
        """Check the rate and reject-on-overflow concurrency limits for a new request."""
        cap = self.faults.max_concurrency
        if cap is not None and self._slots is None and self.in_flight >= cap:
            return Refusal(f"Exceeded the endpoint's concurrency limit of {cap} requests", 1.0)
        if self.requests is not None:
            wait = self.requests.try_take(1)
            if wait > 0:
                limit = self.faults.requests_per_minute
                return Refusal(f"Exceeded rate limit of {limit:g} requests per minute", wait)
        if self.tokens is not None:
            wait = self.tokens.try_take(input_tokens)
            if wait > 0:
                limit = self.faults.tokens_per_minute
                return Refusal(f"Exceeded rate limit of {limit:g} tokens per minute", wait)
        return None

    @property
    def slots(self) -> asyncio.Semaphore | None:
        """The queue that holds requests past max_concurrency when overflow is "queue"."""
        return self._slots

    def charge_output(self, output_tokens: int) -> None:
        if self.tokens is not None:
            self.tokens.charge(output_tokens)

    def latency_s(self) -> float:
        mean = self.faults.latency_ms / 1000.0
        if mean <= 0:
            return 0.0
        if self.faults.latency_distribution == "exponential":
            return self.latency_rng.expovariate(1.0 / mean)
        if self.faults.latency_distribution == "uniform":
            return self.latency_rng.uniform(0.0, 2.0 * mean)
        return mean

    def draw_fault(self) -> str | None:
        """One draw: "500", "503", "hang", "drop", "malformed" or None (answer normally)."""
        f = self.faults
        x = self.rng.random()
        for name, rate in (
            ("500", f.error_rate_500),
            ("503", f.error_rate_503),
            ("hang", f.hang_rate),
            ("drop", f.drop_rate),
            ("malformed", f.malformed_rate),
        ):
            if x < rate:
                return name
            x -= rate
        return None


def retry_after_header(seconds: float) -> dict[str, str]:
    """`Retry-After` in whole seconds (at least 1, as HTTP requires) plus precise milliseconds."""
    return {
        "Retry-After": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, math.ceil(seconds * 1000))),
    }
