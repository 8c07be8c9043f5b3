"""The progress line, from real spool files: rows, rows without a request, cost, and ETA."""

from __future__ import annotations

import io
import time
from pathlib import Path

from aiquery.endpoints.catalog import Price
from aiquery.usage.driver.progress import ProgressMonitor, duration
from aiquery.usage.executor import SpoolWriter
from aiquery.usage.record import CACHE, DUPLICATE, Attempt, Call, Saved

CALL = Call("inv", "system.ai.gpt-5-mini", "e", "PAY_PER_TOKEN_FOUNDATION_MODEL", "d", "m", "ana",
            "api", "http://x", "aiquery/t", None, "app")  # fmt: skip


def spool(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, CALL)
    for i in range(4):
        writer.started(Attempt(f"r{i}", time.time(), 1, 1))
        writer.finished(
            Attempt(f"r{i}", time.time(), 1, 1, 200, 30, 10, None, 1_000_000, 100_000, False)
        )
    writer.saved(Saved("s1", time.time(), 3, DUPLICATE))
    writer.saved(Saved("s2", time.time(), 2, CACHE))
    writer.close()


def test_the_line_counts_rows_saved_and_the_cost_by_the_endpoints_price(tmp_path: Path) -> None:
    monitor = ProgressMonitor(
        tmp_path,
        stream=io.StringIO(),
        tasks=lambda: (1, 4),
        prices={"databricks-gpt-5-mini": Price(0.25, 2.0)},  # the call names its gateway form
    )
    spool(tmp_path)
    tally = monitor.poll()
    assert (tally.rows, tally.requests, tally.saved) == (9, 4, 5)
    assert tally.cost == 4 * (0.25 + 0.2)
    monitor._started = time.monotonic() - 30  # a task of four done after 30 s
    line = monitor.line()
    assert "ai_query: 9 rows" in line and "5 rows without a request" in line
    assert "$1.80" in line and "tasks 1/4 (25%)" in line and "ETA 1m30s" in line


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0.2, 42, 187, 7500)] == ["<1s", "42s", "3m07s", "2h05m"]
