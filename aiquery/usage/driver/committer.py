"""The driver's usage committer: spool files → the Delta table, exactly once.

Exactly-once comes from the data, not from bookkeeping: every row is keyed by its
request id (a UUIDv7 the client sent as `x-request-id`), and a flush is a Delta MERGE
that inserts ids not yet in the table and completes placeholder rows (a started request
whose writer ended without its finish; should the finish still arrive, a later flush
completes it). Re-running a flush, ingesting a file twice after a crash, a retried task,
or two jobs and the CLI flushing at once: none can duplicate a row. Concurrent MERGEs
that conflict are retried, never dropped. Files are deleted only after their rows are
committed and their writer has closed them (or died).

Flushes run at every `aiquery.flush_usage(spark)`, from a background thread (about 2 s after
a job's tasks close their spool files, and every `flushIntervalSeconds` during a long job), before
`aiquery.sql` reads `system.ai_gateway.usage`, at exit, and at the next start after a
crash (the files are still there). The table is created by the first flush; the thread
starts when a call site is first bound for execution (`aiquery.spark.runtime`).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from aiquery.settings import is_classic
from aiquery.usage.driver import memory
from aiquery.usage.driver.merges import ATTEMPTS, CACHED, SAVED, USAGE, Merge, Ran, is_conflict
from aiquery.usage.driver.settings import require_delta, usage_settings
from aiquery.usage.driver.spool import (
    in_time_order,
    is_abandoned,
    quiet,
    read_rows,
    spool_files,
    writer_of,
)
from aiquery.usage.driver.targets import Target, delta_rs_target, hadoop_settings
from aiquery.usage.record import (
    CACHE_ARROW_SCHEMA,
    CACHE_DDL,
    CACHE_TABLE,
    DDL,
    SAVED_ARROW_SCHEMA,
    SAVED_DDL,
    SAVED_TABLE,
    TABLE,
    Call,
    Request,
    cache_table_location,
    saved_table_location,
    usage_table,
)

log = logging.getLogger("aiquery")

MERGE_BATCH_ROWS = 25_000  # rows a MERGE takes at most (README: the driver's memory)


# writer -> its starts without a finish so far: request id -> (the file holding it, it)
Waiting = dict[str, dict[str, tuple[Path, Request]]]


def _copy(waiting: Waiting) -> Waiting:
    return {writer: dict(starts) for writer, starts in waiting.items() if starts}


class UsageCommitter:
    def __init__(
        self, spark: SparkSession, spool_dir: str | Path, location: str, *, in_memory: bool = False
    ) -> None:
        self.spark = spark
        self.spool_dir = Path(spool_dir)
        self.location = location
        self.in_memory = in_memory  # executors cannot read the spool (usage sent to the driver)
        # Where this process can write the table's files itself, delta-rs merges them
        # (`merges`, `targets`); a Spark Connect client's paths are the server's. False once
        # a table refused delta-rs: Spark merges from then on.
        self._delta_rs = is_classic(spark)
        if self._delta_rs:
            memory.prepare()
        memory.keep_heap_small()  # the flushes' memory goes back to the system (`memory`)
        self._targets: dict[str, Target | None] = {}
        self._lock = threading.Lock()
        # Read so far, by file name without its suffix: `.open` renamed `.jsonl` reads on.
        self._offsets: dict[Path, tuple[int, Call | None]] = {}
        self._waiting: Waiting = {}
        self._table_ready = False
        self._saved_ready = False
        self._cache_ready = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.ever_started = False

    def ensure_table(self) -> None:
        if self._table_ready:
            return
        self.spark.sql("CREATE SCHEMA IF NOT EXISTS ai_gateway")
        self.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ({DDL}) USING DELTA "
            f"PARTITIONED BY (event_date) LOCATION '{self.location}' "
            # delta-rs and older readers read tables without deletion vectors.
            "TBLPROPERTIES ('delta.enableDeletionVectors' = 'false')"
        )
        self._table_ready = True

    def flush(self, *, background: bool = False) -> int:
        """Commit everything spooled so far; returns the number of rows merged.

        A start without its finish goes in as a placeholder row. In a `background` flush it
        waits while its writer may still write the finish (often into its next file: they
        rotate): as a row, its finish would make a MERGE rewrite the file holding it, and a
        long job's MERGEs rewrote one growing file. The files holding it stay until then."""
        with self._lock:
            self._activate()
            self.ensure_table()
            files = spool_files(self.spool_dir)
            # Decided before reading: a file is finished only if no writer can still append
            # to it (asked after, a writer that died meanwhile would lose its last lines).
            finished = [p for p in files if p.suffix == ".jsonl" or is_abandoned(p)]
            live = {writer_of(p) for p in set(files) - set(finished)}  # may still write
            rows: dict[str, Request] = {}
            saved: dict[str, dict[str, Any]] = {}
            cached: dict[str, dict[str, Any]] = {}
            progress: dict[Path, tuple[int, Call | None]] = {}
            waiting = _copy(self._waiting)
            merged = 0
            for path in in_time_order(files):  # each batch a stretch of time (`spool`)
                name = path.with_suffix("")
                offset, header = self._offsets.get(name, (0, None))
                found, new_offset, header = read_rows(path, offset, header)
                progress[name] = (new_offset, header)
                saved.update((row["saved_id"], row) for row in found.saved)
                cached.update((row["key"], row) for row in found.cached)  # the newest wins
                starts = waiting.setdefault(writer_of(path), {})
                for request in found.usage:
                    request_id = request.attempt.request_id
                    if request.finished:
                        starts.pop(request_id, None)
                        rows[request_id] = request
                    else:
                        starts[request_id] = (name, request)
                # Bounded batches keep the driver's memory flat however long the job ran.
                if max(len(rows), len(saved), len(cached)) >= MERGE_BATCH_ROWS:
                    merged += self._merge_batch(rows)
                    self._merge_saved(saved)
                    self._merge_cached(cached)
                    self._offsets.update(progress)
                    self._waiting = _copy(waiting)
            for writer in [w for w in waiting if w not in live or not background]:
                for request_id, (_, request) in waiting.pop(writer).items():
                    rows.setdefault(request_id, request)
            if rows:
                merged += self._merge_batch(rows)
            self._merge_saved(saved)
            self._merge_cached(cached)
            self._offsets.update(progress)
            self._waiting = _copy(waiting)
            holding = {name for starts in waiting.values() for name, _ in starts.values()}
            for path in finished:
                if path.with_suffix("") not in holding:
                    path.unlink(missing_ok=True)
                    self._offsets.pop(path.with_suffix(""), None)
            if merged:
                memory.give_back()
            return merged

    def _merge_batch(self, rows: dict[str, Request]) -> int:
        count = len(rows)
        if rows:
            table = usage_table(list(rows.values()))
            self._merge(USAGE, self.location, table)
        rows.clear()
        return count

    def _merge_saved(self, saved: dict[str, dict[str, Any]]) -> None:
        """Rows answered without a request go to their own table, keyed by record id."""
        if not saved:
            return
        self._ensure_saved_table()
        table = pa.Table.from_pylist(list(saved.values()), schema=SAVED_ARROW_SCHEMA)
        self._merge(SAVED, saved_table_location(self.location), table)
        saved.clear()

    def _merge_cached(self, cached: dict[str, dict[str, Any]]) -> None:
        """Answers for the response cache go to its table, one row per key (the newest)."""
        if not cached:
            return
        if not self._cache_ready:
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {CACHE_TABLE} ({CACHE_DDL}) USING DELTA "
                f"PARTITIONED BY (endpoint_name) LOCATION '{cache_table_location(self.location)}' "
                "TBLPROPERTIES ('delta.enableDeletionVectors' = 'false')"
            )
            self._cache_ready = True
        table = pa.Table.from_pylist(list(cached.values()), schema=CACHE_ARROW_SCHEMA)
        self._merge(CACHED, cache_table_location(self.location), table)
        cached.clear()

    def _ensure_saved_table(self) -> None:
        if self._saved_ready:
            return
        self.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {SAVED_TABLE} ({SAVED_DDL}) USING DELTA "
            f"PARTITIONED BY (event_date) LOCATION '{saved_table_location(self.location)}' "
            "TBLPROPERTIES ('delta.enableDeletionVectors' = 'false')"
        )
        self._saved_ready = True

    def _activate(self) -> None:
        # The JVM keeps the active session per thread, and Delta's MERGE looks it up; a
        # flush from the background thread (its own JVM thread) must set it first. A Spark
        # Connect client has no JVM: its server runs each statement in the right session.
        if not is_classic(self.spark):
            return
        jvm = self.spark.sparkContext._jvm
        if jvm is not None:
            jvm.org.apache.spark.sql.SparkSession.setActiveSession(self.spark._jsparkSession)

    @property
    def engine(self) -> str:
        """What merges this committer's usage table: "delta-rs" or "spark"."""
        return "spark" if self._target(self.location) is None else "delta-rs"

    def _target(self, location: str) -> Target | None:
        if not self._delta_rs:
            return None
        if location not in self._targets:
            self._targets[location] = delta_rs_target(location, hadoop_settings(self.spark))
        return self._targets[location]

    def _merge(self, merge: Merge, location: str, table: pa.Table) -> None:
        target = self._target(location)
        if target is not None:
            ran = merge.run_delta_rs(target, table)
            if ran is Ran.MERGED:
                return
            if ran is Ran.NOT_WRITABLE:
                self._delta_rs = False
        scope = merge.scope(table)
        with self._source(table) as source:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    self.spark.sql(merge.sql(source, scope))
                    return
                except Exception as e:  # a concurrent writer won: retry against the new snapshot
                    if attempt == ATTEMPTS or not is_conflict(e):
                        raise
                    time.sleep(0.2 * attempt)

    @contextmanager
    def _source(self, table: pa.Table) -> Iterator[str]:
        """The batch as MERGE's source. Where executors can read the spool, a Parquet file
        there: Delta reads a file source as it is, where an in-memory DataFrame would be
        materialised (cached) first. Where they cannot (usage delivered to the driver), the
        rows travel in the plan."""
        if self.in_memory:
            view = f"_aiquery_usage_batch_{uuid.uuid4().hex}"
            self.spark.createDataFrame(table).createOrReplaceTempView(view)
            try:
                yield view
            finally:
                self.spark.catalog.dropTempView(view)
            return
        staging = self.spool_dir / "_merge"
        staging.mkdir(parents=True, exist_ok=True)
        path = staging / f"{uuid.uuid4().hex}.parquet"
        pq.write_table(table, path)
        try:
            yield f"parquet.`{path}`"
        finally:
            path.unlink(missing_ok=True)

    # --- background flushing ---------------------------------------------------------------

    def start(self, interval_s: float = 60.0, idle_s: float = 2.0) -> None:
        """Flush in the background: once the spool has been quiet for `idle_s` with every
        file closed (a job just finished, `spool.quiet`), and at least every `interval_s`
        while a long job keeps writing; once more at exit."""
        if self._thread is not None:
            return
        self.ever_started = True
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(interval_s, idle_s), name="aiquery-usage", daemon=True
        )
        self._thread.start()
        atexit.register(self.stop)

    def _run(self, interval_s: float, idle_s: float) -> None:
        # A MERGE costs a few CPU-seconds; on a small machine, one during a job slows the
        # job itself, so flushes wait for a pause unless the job runs for long.
        last_flush = time.monotonic()
        while not self._stop.wait(0.5):
            files = spool_files(self.spool_dir)
            if not files:
                last_flush = time.monotonic()
                continue
            try:
                stopped = quiet(files, idle_s, interval_s)
            except FileNotFoundError:
                continue
            if not stopped and time.monotonic() - last_flush < interval_s:
                continue
            try:
                if self.flush(background=True):
                    last_flush = time.monotonic()
            except Exception:  # the session may be stopping; the files stay for next time
                log.debug("aiquery: background usage flush failed", exc_info=True)
                last_flush = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            if spool_files(self.spool_dir):
                self.flush()
        except Exception:
            log.warning(
                "aiquery: usage records stay spooled in %s until the next flush", self.spool_dir
            )


_committers: dict[tuple[int, str], UsageCommitter] = {}
_committers_lock = threading.Lock()


def committer(spark: SparkSession) -> UsageCommitter:
    """This session's committer (one per session and spool). Making it starts nothing."""
    settings = usage_settings(spark)
    key = (id(spark), settings.spool_dir)
    with _committers_lock:
        found = _committers.get(key)
        if found is None:
            found = _committers[key] = UsageCommitter(
                spark,
                settings.spool_dir,
                settings.location,
                in_memory=settings.delivery == "driver",
            )
        return found


def start_committing(spark: SparkSession) -> None:
    """Commit this session's spooled usage in the background from now on: once per session
    (idempotent; a committer stopped on purpose stays stopped)."""
    found = committer(spark)
    if not found.ever_started:
        require_delta(spark)
        found.start(usage_settings(spark).flush_interval_s)


def flush(spark: SparkSession) -> int:
    """Commit spooled usage now (creating the table if needed); returns the rows merged."""
    return committer(spark).flush()


def flush_all() -> int:
    """Commit now what every committer of this process has spooled (a read of the usage
    table through the SQL extension's `system` catalog asks for this first)."""
    with _committers_lock:
        found = list(_committers.values())
    return sum(c.flush() for c in found if c.ever_started)


def retire(spark: SparkSession) -> None:
    """Let a session go: its committers stopped after their last flush, and forgotten (they
    held the session)."""
    with _committers_lock:
        keys = [k for k in _committers if k[0] == id(spark)]
        found = [_committers.pop(k) for k in keys]
    for c in found:
        atexit.unregister(c.stop)
        c.stop()


def stop_all() -> None:
    """What exit does: every committer stopped after its last flush."""
    with _committers_lock:
        found = list(_committers.values())
    for c in found:
        c.stop()
