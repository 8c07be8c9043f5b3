"""The usage report's lines: requests, tokens, cost and rows saved per group."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aiquery.endpoints.catalog import Price
from aiquery.usage.report import format_table, price_rows, summarize

DAY1, DAY2 = datetime(2026, 11, 30, 9, tzinfo=UTC), datetime(2026, 12, 1, 9, tzinfo=UTC)


def request(
    endpoint: str, when: datetime, tokens: tuple[int, int] | None, team: str
) -> dict[str, Any]:
    return {
        "endpoint_name": endpoint,
        "event_time": when,
        "status_code": 200 if tokens else 500,
        "input_tokens": tokens[0] if tokens else None,
        "output_tokens": tokens[1] if tokens else None,
        "latency_ms": 100,
        "request_tags": {"team": team},
        "requester": "ana",
    }


def saved(endpoint: str, when: datetime, rows: int, team: str) -> dict[str, Any]:
    return {
        "saved_id": f"{endpoint}-{rows}",
        "endpoint_name": endpoint,
        "event_time": when,
        "rows": rows,
        "source": "duplicate",
        "request_tags": {"team": team},
        "requester": "ana",
    }


ROWS = [
    request("databricks-gpt-5-mini", DAY1, (1_000_000, 100_000), "ads"),
    request("databricks-gpt-5-mini", DAY2, (2_000_000, 0), "risk"),
    request("databricks-gpt-5-mini", DAY2, None, "risk"),  # failed: no tokens, no cost
    request("my-llama", DAY2, (500, 500), "ads"),  # no price known
]
SAVED = [saved("databricks-gpt-5-mini", DAY2, 30, "risk"), saved("my-llama", DAY1, 4, "ads")]
PRICES = {"databricks-gpt-5-mini": Price(0.25, 2.0)}


def lines(by: list[str]) -> dict[tuple[str, ...], dict[str, Any]]:
    rows = [dict(r) for r in ROWS]
    price_rows(rows, PRICES)
    return {tuple(line[g] for g in by): line for line in summarize(rows, by, SAVED)}


def test_cost_and_rows_saved_by_endpoint() -> None:
    by = lines(["endpoint"])
    mini = by[("databricks-gpt-5-mini",)]
    assert mini["requests"] == 3 and mini["errors"] == 1
    assert mini["cost_usd"] == pytest.approx(0.25 + 0.2 + 0.5)  # 1M in + 100k out; 2M in
    assert mini["rows_saved"] == 30
    llama = by[("my-llama",)]
    assert llama["cost_usd"] is None and llama["rows_saved"] == 4  # unknown, not zero


def test_cost_by_day_and_by_tag() -> None:
    days = lines(["day"])
    assert days[("2026-11-30",)]["cost_usd"] == pytest.approx(0.45)
    assert days[("2026-12-01",)]["cost_usd"] == pytest.approx(0.5)
    teams = lines(["team"])
    assert teams[("ads",)]["cost_usd"] == pytest.approx(0.45)
    assert (teams[("risk",)]["cost_usd"], teams[("risk",)]["rows_saved"]) == (
        pytest.approx(0.5),
        30,
    )


def test_a_group_with_only_saved_rows_is_a_line_of_its_own() -> None:
    by = lines(["endpoint", "day"])
    only_saved = by[("my-llama", "2026-11-30")]
    assert (only_saved["requests"], only_saved["rows_saved"], only_saved["cost_usd"]) == (
        0,
        4,
        None,
    )


def test_the_table_shows_dollars_with_cents_and_unknown_as_a_dash() -> None:
    text = format_table(summarize(
        [dict(r, cost_usd=c) for r, c in zip(ROWS[:2], (12345.678, 0.00042), strict=True)], ["day"]
    ))  # fmt: skip
    assert "12,345.68" in text and "0.0004" in text
    assert "cost_usd" in text.splitlines()[0] and "rows_saved" in text.splitlines()[0]
