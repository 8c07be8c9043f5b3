"""Rate limits held by a whole job, not split among its tasks by a guess.

An endpoint's `requests_per_minute` and `tokens_per_minute` are one budget for every task
of every executor, however many run at once (dynamic allocation, stragglers, retried and
speculative tasks). The budget is a `PermitBank` on the driver (served by the coordinator,
`aiquery.spark.coordinator`); each task's `SharedBudget` takes permits from it in small
leases and hands them to its requests, with the same `take`/`charge` as the task-local
`RateBudget` it replaces.

A lease is a few tens of milliseconds of the whole rate, so a task never holds much that
others could use, and the bank sees a few calls per second per task, not one per request.
Permits granted are never more than the rate over time plus one second of burst: what
the endpoint's own bucket admits. Usage known only afterwards (output tokens) is charged
to the bank with the task's next lease, as debt. A task that ends settles with the bank:
its unpaid debt is charged and the permits it still holds go back, so neither a task's
last answers nor its unused lease is lost to the job.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from aiquery.errors import AiQueryError
from aiquery.usage.relay import CoordinatorRoute

PERMITS_PATH = "/permits"
LEASE_S = 0.05  # a lease is this much of the whole rate (at least one unit)
SETTLE_S = 5.0  # how long a closing task tries to settle with the bank


class PermitBank:
    """The driver's buckets, one per (endpoint, kind): thread-safe, all-or-nothing grants."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}  # key -> [rate/s, capacity, level, stamp]

    def grant(
        self, key: str, per_minute: float, want: float, debt: float = 0.0, returned: float = 0.0
    ) -> float:
        """Take `want` units now and return 0, or take nothing and return seconds to wait.

        `debt` (usage charged after the fact) is taken first; `returned` (units leased but
        not used) goes back, never above the bucket's capacity."""
        if per_minute <= 0 or want < 0 or debt < 0 or returned < 0:
            raise ValueError("per_minute must be > 0, want, debt and returned >= 0")
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            rate = per_minute / 60.0
            if bucket is None or bucket[0] != rate:  # new, or its limit was changed
                bucket = self._buckets[key] = [rate, max(1.0, rate), max(1.0, rate), now]
            _, capacity, level, stamp = bucket
            level = min(capacity, level + (now - stamp) * rate + returned) - debt
            needed = min(want, capacity)  # more than a burst waits for a full bucket
            if level >= needed:
                level -= want
                wait = 0.0
            else:
                wait = (needed - level) / rate
            bucket[2], bucket[3] = level, now
            return wait


class PermitsUnavailableError(AiQueryError):
    """The driver's permit bank could not be reached."""


class SharedBudget:
    """One task's share of a job-wide budget: `take` waits for permits leased from the bank."""

    def __init__(
        self,
        url: str,
        token: str,
        key: str,
        per_minute: float,
        *,
        deadline_s: float = 120.0,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be > 0")
        self.key = key
        self.per_minute = per_minute
        self.lease = max(1.0, per_minute / 60.0 * LEASE_S)
        self.leases = 0
        self._route = CoordinatorRoute(
            url,
            PERMITS_PATH,
            token,
            what="the job-wide rate limit's permits",
            error=PermitsUnavailableError,
            deadline_s=deadline_s,
        )
        self._held = 0.0
        self._debt = 0.0
        self._lock = asyncio.Lock()

    async def take(self, amount: float = 1.0) -> None:
        async with self._lock:  # first come, first served within the task
            while self._held < amount:
                want = max(amount - self._held, self.lease)
                wait = await self._ask(want)
                if wait == 0.0:
                    self._held += want
                    self.leases += 1
                else:
                    await asyncio.sleep(min(wait, 1.0))
            self._held -= amount

    def charge(self, amount: float) -> None:
        """Usage known only afterwards: paid from what the task holds, the rest as debt."""
        paid = min(self._held, amount)
        self._held -= paid
        self._debt += amount - paid

    async def close(self) -> None:
        """Settle with the bank: charge the unpaid debt, give back the unused permits."""
        try:
            if self.leases and (self._held > 0 or self._debt > 0):
                returned, self._held = self._held, 0.0
                self._route.deadline_s = SETTLE_S  # a task's end is not held up for long
                await self._ask(0.0, returned)
        except PermitsUnavailableError:
            pass  # the driver is gone: its bank with it, there is nothing left to settle
        finally:
            await self._route.close()

    async def _ask(self, want: float, returned: float = 0.0) -> float:
        body = {
            "key": self.key,
            "per_minute": self.per_minute,
            "want": want,
            "debt": self._debt,
            "returned": returned,
        }
        answer = await self._route.post(body)
        self._debt = 0.0
        return float(answer["wait_s"])
