"""Driver side: live progress of ai_query jobs, read from the usage spool.

Executors already write a line per request to the spool; the monitor tails those files
once a second and shows rows answered, rows/s, tokens, 429s, retries, requests in flight
and Spark's task progress, on one self-updating line (CLI) or in a notebook cell.

    with aiquery.progress(spark):
        aiquery.sql(spark, "...").write...
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from aiquery.endpoints.catalog import Price, price_of
from aiquery.errors import AiQueryError
from aiquery.settings import is_classic
from aiquery.usage.driver.spool import read_events
from aiquery.usage.record import SAVED, STARTED, Attempt, CacheEntry, Call, Saved

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(slots=True)
class Tally:
    rows: int = 0
    requests: int = 0
    errors: int = 0
    throttled: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    started: int = 0
    saved: int = 0  # rows answered without a request (duplicates, cache hits)
    cost: float = 0.0  # USD, of answers from endpoints with a known price

    @property
    def in_flight(self) -> int:
        return max(0, self.started - self.requests)

    def add(
        self, kind: str, attempt: Attempt | Saved | CacheEntry, price: Price | None = None
    ) -> None:
        """Count one spool event (a request started or finished, or rows saved); `price`:
        its endpoint's, for the cost so far."""
        if isinstance(attempt, CacheEntry):
            return  # an answer kept for the cache: its request was counted already
        if isinstance(attempt, Saved):
            if kind == SAVED:
                self.rows += attempt.rows
                self.saved += attempt.rows
            return
        if kind == STARTED:
            self.started += 1
            return
        self.requests += 1
        if (attempt.attempt or 1) > 1:
            self.retries += 1
        if attempt.status_code == 429:
            self.throttled += 1
        if attempt.status_code == 200:
            self.rows += attempt.rows or 0
            self.input_tokens += attempt.input_tokens or 0
            self.output_tokens += attempt.output_tokens or 0
            if price is not None:
                self.cost += price.cost(attempt.input_tokens, attempt.output_tokens)
        else:
            self.errors += 1


class ProgressMonitor:
    def __init__(
        self,
        spool_dir: str | Path,
        *,
        stream: TextIO | None = None,
        interval_s: float = 1.0,
        tasks: Callable[[], tuple[int, int]] | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self.prices = prices or {}
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.tasks = tasks
        self.tally = Tally()
        # By file stem: a writer renames `.open` to `.jsonl` when it closes a file.
        self._offsets: dict[str, tuple[int, Call | None]] = {
            p.stem: (p.stat().st_size, None) for p in self._files()
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aiquery-progress", daemon=True)
        self._started = time.monotonic()

    def _files(self) -> list[Path]:
        try:
            return [p for p in self.spool_dir.iterdir() if p.suffix in (".open", ".jsonl")]
        except FileNotFoundError:
            return []

    def poll(self) -> Tally:
        """Read the lines written since the last poll."""
        for path in self._files():
            offset, call = self._offsets.get(path.stem, (0, None))
            events, offset, call = read_events(path, offset, call)
            price = price_of(self.prices, call.endpoint_name) if call is not None else None
            for kind, attempt in events:
                self.tally.add(kind, attempt, price)
            self._offsets[path.stem] = (offset, call)
        return self.tally

    def line(self) -> str:
        t = self.tally
        elapsed = max(1e-9, time.monotonic() - self._started)
        parts = [
            f"ai_query: {t.rows:,} rows",
            f"{t.rows / elapsed:,.0f} rows/s",
            f"{t.input_tokens + t.output_tokens:,} tokens",
            f"{t.requests:,} requests ({t.in_flight} in flight)",
            f"{t.retries:,} retries",
            f"{t.throttled:,} throttled (429)",
        ]
        if t.saved:
            parts.append(f"{t.saved:,} rows without a request")
        if t.errors:
            parts.append(f"{t.errors:,} failed attempts")
        if t.cost:
            parts.append(f"${t.cost:,.2f}" if t.cost >= 1 else f"${t.cost:.4f}")
        if self.tasks is not None:
            done, total = self.tasks()
            if total:
                parts.append(f"tasks {done}/{total} ({done / total:.0%})")
                if done:
                    # Tasks are the unit Spark knows the size of up front; the time per task
                    # so far, for the tasks left, is the estimate (rough for few tasks).
                    parts.append(f"ETA {duration(elapsed * (total - done) / done)}")
        return " | ".join(parts)

    def _run(self) -> None:
        # A terminal gets one line rewritten in place; a log or notebook a line every 10 s.
        tty = self.stream.isatty()
        last = time.monotonic()
        while not self._stop.wait(self.interval_s):
            self.poll()
            if not self.tally.started:
                continue
            if tty:
                self.stream.write("\r" + self.line() + "\x1b[K")
            elif time.monotonic() - last >= 10:
                self.stream.write(self.line() + "\n")
                last = time.monotonic()
            else:
                continue
            self.stream.flush()

    def start(self) -> ProgressMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.poll()
        if self.tally.requests or self.tally.saved:
            prefix, suffix = ("\r", "\x1b[K\n") if self.stream.isatty() else ("", "\n")
            self.stream.write(prefix + self.line() + suffix)
            self.stream.flush()


def duration(seconds: float) -> str:
    """A span for people: <1s, 42s, 3m07s, 2h05m."""
    if seconds < 1:
        return "<1s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _spark_tasks(spark: SparkSession) -> tuple[int, int]:
    """(completed, total) tasks of the stages running now; (0, 0) under Spark Connect, whose
    clients see no stages."""
    if not is_classic(spark):
        return 0, 0
    tracker = spark.sparkContext.statusTracker()
    done = total = 0
    for stage_id in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            done += info.numCompletedTasks
            total += info.numTasks
    return done, total


@contextmanager
def progress(
    spark: SparkSession, *, stream: TextIO | None = None, interval_s: float = 1.0
) -> Iterator[ProgressMonitor]:
    """Show live progress of the ai_query requests made inside the block."""
    from aiquery.usage.driver.settings import usage_settings

    monitor = ProgressMonitor(
        usage_settings(spark).spool_dir,
        stream=stream,
        interval_s=interval_s,
        tasks=lambda: _spark_tasks(spark),
        prices=_prices(),
    )
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.stop()


def _prices() -> dict[str, Price]:
    from aiquery.endpoints.registry import load_registry

    try:
        return {name: e.price for name, e in load_registry().endpoints.items() if e.price}
    except AiQueryError:  # a bad endpoints file fails the query itself, with its message
        return {}
