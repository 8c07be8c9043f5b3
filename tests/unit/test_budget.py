"""The driver's budget bank: exact request counts, tokens and cost checked before granting."""

from __future__ import annotations

import threading

import pytest

from aiquery.client.budget import BudgetBank

REQUESTS = {"requests": 20, "tokens": None, "cost": None}


def test_requests_are_granted_exactly_up_to_the_limit() -> None:
    bank = BudgetBank()
    granted = [bank.lease("q", REQUESTS, 8) for _ in range(4)]
    assert [g for g, _ in granted] == [8, 8, 4, 0]
    assert granted[-1][1] == "aiquery.budget.maxRequests = 20 requests were sent"


def test_requests_given_back_can_be_granted_again() -> None:
    bank = BudgetBank()
    bank.lease("q", REQUESTS, 8)
    bank.lease("q", REQUESTS, 8)
    bank.lease("q", REQUESTS, 0, returned=5)  # a task ended holding five unused
    assert bank.lease("q", REQUESTS, 20) == (9, None)


def test_tokens_and_cost_stop_the_granting_once_reached() -> None:
    bank = BudgetBank()
    limits = {"requests": None, "tokens": 1000, "cost": 0.5}
    assert bank.lease("t", limits, 8, tokens=999) == (8, None)
    granted, why = bank.lease("t", limits, 8, tokens=1)
    assert granted == 0 and why is not None and "maxTokens = 1,000 tokens" in why
    assert bank.lease("c", limits, 8, cost=0.49) == (8, None)
    granted, why = bank.lease("c", limits, 8, cost=0.02)
    assert granted == 0 and why is not None and "maxCost = $0.5 was spent ($0.5100)" in why


def test_keys_are_separate_budgets() -> None:
    bank = BudgetBank()
    bank.lease("a", REQUESTS, 20)
    assert bank.lease("a", REQUESTS, 1)[0] == 0
    assert bank.lease("b", REQUESTS, 1)[0] == 1


def test_concurrent_leases_never_grant_past_the_limit() -> None:
    bank = BudgetBank()
    limits = {"requests": 1000, "tokens": None, "cost": None}
    granted: list[int] = []

    def worker() -> None:
        for _ in range(200):
            granted.append(bank.lease("q", limits, 3)[0])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 1000 and bank.spent("q")[0] == 1000


def test_negative_amounts_are_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        BudgetBank().lease("q", REQUESTS, 1, tokens=-5)
