"""Budgets: a job stops sending at `aiquery.budget.maxRequests`, `maxTokens` or `maxCost`.

A budget belongs to one call site as bound for one query, across every task of every
executor: the `BudgetBank` on the driver (served by the coordinator, like the rate limits'
permits) holds what was spent, and each task's `JobBudget` asks it before sending.

- Requests are exact: every HTTP attempt (a retry too) takes one from the bank, leased a
  few at a time; a task gives back what it did not use as it ends.
- Tokens and cost are known only once an answer arrives: a task reports them with its
  next lease, and the bank grants no request once they reach the limit. What overshoots
  is what was in flight (or leased) then, as with any limit checked before sending.

Once the bank refuses, the task's remaining rows get a "budget exhausted" error without a
request (or, under `failOnError => true`, the query fails with it); usage of what was sent
is recorded as always.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from aiquery.errors import AiQueryError
from aiquery.usage.relay import CoordinatorRoute

BUDGET_PATH = "/budget"
LEASE = 8  # requests granted per call to the bank (the bank is asked once per this many)


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """A query's limits (None: no limit of that kind) and the key the bank knows it by."""

    key: str
    max_requests: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None  # US dollars, from the endpoint's price

    def as_json(self) -> dict[str, object]:
        return {"requests": self.max_requests, "tokens": self.max_tokens, "cost": self.max_cost}


@dataclass(slots=True)
class _Account:
    requests: int = 0  # granted (sent, or leased and not given back)
    tokens: int = 0
    cost: float = 0.0


class BudgetBank:
    """The driver's accounts, one per budget key: thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}

    def lease(
        self,
        key: str,
        limits: dict[str, float | None],
        want: int,
        *,
        tokens: int = 0,
        cost: float = 0.0,
        returned: int = 0,
    ) -> tuple[int, str | None]:
        """Record `tokens`, `cost` and unused requests `returned`, then grant up to `want`
        requests: (granted, why none could be) with the reason naming the limit."""
        if want < 0 or tokens < 0 or cost < 0 or returned < 0:
            raise ValueError("want, tokens, cost and returned must be >= 0")
        with self._lock:
            account = self._accounts.setdefault(key, _Account())
            account.tokens += tokens
            account.cost += cost
            account.requests -= min(returned, account.requests)
            reason = _spent(account, limits)
            if reason is not None or want == 0:
                return 0, reason
            max_requests = limits.get("requests")
            granted = want
            if max_requests is not None:
                granted = max(0, min(want, int(max_requests) - account.requests))
                if granted == 0:
                    return (
                        0,
                        f"aiquery.budget.maxRequests = {int(max_requests):,} requests were sent",
                    )
            account.requests += granted
            return granted, None

    def spent(self, key: str) -> tuple[int, int, float]:
        """(requests, tokens, cost) recorded against `key` so far."""
        with self._lock:
            account = self._accounts.get(key, _Account())
            return account.requests, account.tokens, account.cost


def _spent(account: _Account, limits: dict[str, float | None]) -> str | None:
    max_tokens, max_cost = limits.get("tokens"), limits.get("cost")
    if max_tokens is not None and account.tokens >= max_tokens:
        return (
            f"aiquery.budget.maxTokens = {int(max_tokens):,} tokens were used ({account.tokens:,})"
        )
    if max_cost is not None and account.cost >= max_cost:
        return f"aiquery.budget.maxCost = ${max_cost:g} was spent (${account.cost:.4f})"
    return None


class BudgetUnavailableError(AiQueryError):
    """The driver's budget bank could not be reached."""


class JobBudget:
    """One task's side of a query's budget: `admit` before each attempt, `charge` after."""

    def __init__(
        self, url: str, token: str, limits: BudgetLimits, *, deadline_s: float = 120.0
    ) -> None:
        self.limits = limits
        self.exhausted: str | None = None  # why the bank refused, once it has
        self._route = CoordinatorRoute(
            url,
            BUDGET_PATH,
            token,
            what="the query's budget",
            error=BudgetUnavailableError,
            deadline_s=deadline_s,
        )
        self._held = 0
        self._tokens = 0
        self._cost = 0.0
        self._lock = asyncio.Lock()

    async def admit(self) -> bool:
        """Take one request from the budget; False once it is exhausted (see `exhausted`)."""
        async with self._lock:
            if self.exhausted is None and self._held == 0:
                granted, reason = await self._ask(LEASE)
                self._held += granted
                if granted == 0:
                    self.exhausted = reason or "the budget is spent"
            if self._held == 0:
                return False
            self._held -= 1
            return True

    def charge(self, tokens: int, cost: float) -> None:
        """An answer's tokens and cost, reported to the bank with the next lease."""
        self._tokens += tokens
        self._cost += cost

    async def close(self) -> None:
        """Report what is unreported and give back unused requests, as the task ends."""
        try:
            if self._held or self._tokens or self._cost:
                await self._ask(0, returned=self._held)
                self._held = 0
        finally:
            await self._route.close()

    async def _ask(self, want: int, returned: int = 0) -> tuple[int, str | None]:
        tokens, cost = self._tokens, self._cost  # answers may arrive while this is asked
        body = {
            "key": self.limits.key,
            "limits": self.limits.as_json(),
            "want": want,
            "tokens": tokens,
            "cost": cost,
            "returned": returned,
        }
        granted = await self._route.post(body)
        self._tokens -= tokens
        self._cost -= cost
        return int(granted["granted"]), granted.get("exhausted")
