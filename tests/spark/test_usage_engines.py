"""The committer's two MERGE engines: delta-rs for a table on the driver's disk, Spark's
elsewhere. Both complete a placeholder in a later flush, and racing each other they still
record each request once."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pyarrow as pa
import pytest
from usage_calls import a_call, flush_at_once

from aiquery.usage import executor
from aiquery.usage.driver import committer as committer_module
from aiquery.usage.driver import merges
from aiquery.usage.driver.committer import UsageCommitter, committer
from aiquery.usage.driver.merges import USAGE, Ran
from aiquery.usage.driver.settings import usage_settings
from aiquery.usage.driver.spool import spool_files
from aiquery.usage.driver.targets import Target
from aiquery.usage.executor import SpoolWriter
from aiquery.usage.record import ARROW_SCHEMA, DDL, NO_ANSWER, Attempt, new_id

pytestmark = pytest.mark.spark

CALL = a_call("merge-engines", request_tags={"engine": "test"})


def _committer(spark, spool: Path, engine: str) -> UsageCommitter:  # type: ignore[no-untyped-def]
    found = UsageCommitter(spark, spool, usage_settings(spark).location)
    assert found.engine == "delta-rs"  # the session's table is on local disk
    found._delta_rs = engine == "delta-rs"
    return found


def _rows(spark, ids: list[str]) -> list:  # type: ignore[no-untyped-def]
    listed = ",".join(f"'{i}'" for i in ids)
    return (
        spark.read.format("delta")
        .load(usage_settings(spark).location)
        .where(f"request_id IN ({listed})")
        .collect()
    )


def _done(started: Attempt) -> Attempt:
    return Attempt(started.request_id, started.event_time, 1, 1, 200, 42, 7)


@pytest.mark.parametrize("engine", ["delta-rs", "spark"])
def test_a_start_waits_for_its_finish_while_its_writer_may_still_write_it(
    spark, tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A finish often lands in the writer's next file: the background flusher gives the
    table the finished row only, never a placeholder to rewrite later. A start left when its
    writer ends becomes a placeholder, and so does one still waiting when a reader asks for
    the table as it is now."""
    monkeypatch.setattr(executor, "ROTATE_LINES", 3)  # a header and two lines a file
    committer(spark).stop()  # the background flusher must not read this spool
    try:
        spool = tmp_path / "spool"
        flusher = _committer(spark, spool, engine)
        writer = SpoolWriter(spool, CALL)
        a, b, c = (Attempt(new_id(), time.time(), 1, 1) for _ in range(3))
        writer.started(a)
        writer.started(b)
        writer.started(c)  # the first file is full: c starts the second
        writer.finished(_done(a))
        first, second = spool_files(spool)
        assert (first.suffix, second.suffix) == (".jsonl", ".open")
        assert flusher.flush(background=True) == 1
        assert [r.request_id for r in _rows(spark, [a.request_id, b.request_id, c.request_id])] == [
            a.request_id
        ]
        assert spool_files(spool) == [first, second]  # the closed file holds b's start
        writer.finished(_done(b))
        assert flusher.flush(background=True) == 1
        (row,) = _rows(spark, [b.request_id])
        assert row.status_code == 200
        assert spool_files(spool) == [second]  # nothing waits on the first file now
        writer.close()  # the task ends without c's answer
        assert flusher.flush(background=True) == 1
        (placeholder,) = _rows(spark, [c.request_id])
        assert placeholder.status_code is None and placeholder.latency_ms is None
        assert placeholder.error_message == NO_ANSWER
        assert spool_files(spool) == []
        d = Attempt(new_id(), time.time(), 1, 1)
        writer.started(d)  # a live writer's start: held back, then asked for
        assert flusher.flush(background=True) == 0 and _rows(spark, [d.request_id]) == []
        assert flusher.flush() == 1
        (placeholder,) = _rows(spark, [d.request_id])
        assert placeholder.status_code is None
        writer.close()
    finally:
        committer(spark).start()


def test_a_flush_cuts_its_batches_by_time_across_writers(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Two tasks write at once; each MERGE batch is a stretch of time across both, so no
    batch's id range reaches into another's (a batch reads back, from the table, every file
    of an earlier batch its range meets). Read writer by writer, the second writer's
    batches spanned the first's."""
    monkeypatch.setattr(executor, "ROTATE_LINES", 5)  # a header and two requests a file
    monkeypatch.setattr(committer_module, "MERGE_BATCH_ROWS", 4)
    committer(spark).stop()  # the background flusher must not read this spool
    try:
        spool = tmp_path / "spool"
        flusher = _committer(spark, spool, "delta-rs")
        batches: list[list[str]] = []
        merge_batch = flusher._merge_batch

        def spy(rows: dict) -> int:  # type: ignore[type-arg]
            batches.append(sorted(rows))
            return merge_batch(rows)

        flusher._merge_batch = spy  # type: ignore[method-assign]
        writers = [SpoolWriter(spool, CALL), SpoolWriter(spool, CALL)]
        ids = []
        for i in range(16):
            started = Attempt(new_id(), time.time(), 1, 1)
            writers[i % 2].started(started)
            writers[i % 2].finished(_done(started))
            ids.append(started.request_id)
            time.sleep(0.02)  # files finished in turn have distinct modification times
        for writer in writers:
            writer.close()
        assert flusher.flush() == 16
        assert sorted(i for batch in batches for i in batch) == sorted(ids)
        assert len(batches) == 4, batches
        for earlier, later in itertools.pairwise(batches):
            assert earlier[-1] < later[0], batches
        assert len(_rows(spark, ids)) == 16
    finally:
        committer(spark).start()


@pytest.mark.parametrize("engine", ["delta-rs", "spark"])
def test_a_placeholder_is_completed_by_a_finish_that_comes_after_all(
    spark, tmp_path: Path, engine: str
) -> None:  # type: ignore[no-untyped-def]
    """A writer that looked done (between two files, or idle past the abandon time) may
    still write a finish: the later flush completes the placeholder."""
    committer(spark).stop()
    try:
        spool = tmp_path / "spool"
        flusher = _committer(spark, spool, engine)
        writer = SpoolWriter(spool, CALL)
        request = Attempt(new_id(), time.time(), 1, 1)
        writer.started(request)
        writer.close()
        assert flusher.flush() == 1
        (placeholder,) = _rows(spark, [request.request_id])
        assert placeholder.latency_ms is None and placeholder.status_code is None
        writer.finished(_done(request))
        writer.close()
        flusher.flush()
        flusher.flush()  # again: nothing changes
        (done,) = _rows(spark, [request.request_id])
        assert (done.status_code, done.latency_ms, done.request_tags) == (
            200,
            42,
            {"engine": "test"},
        )
    finally:
        committer(spark).start()


def test_spark_and_delta_rs_racing_on_one_spool_record_each_request_once(
    spark, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    committer(spark).stop()
    try:
        spool = tmp_path / "spool"
        ids: list[str] = []
        for _ in range(3):  # rounds: each a fresh spool file, both engines flushing at once
            writer = SpoolWriter(spool, CALL)
            for _ in range(200):
                request = Attempt(new_id(), time.time(), 1, 1, 200, 5, 2)
                writer.started(request)
                writer.finished(request)
                ids.append(request.request_id)
            writer.close()
            flush_at_once(_committer(spark, spool, engine) for engine in ("delta-rs", "spark"))
        rows = _rows(spark, ids)
        assert sorted(r.request_id for r in rows) == sorted(ids)  # each once, none lost
    finally:
        committer(spark).start()


def test_a_table_delta_rs_cannot_write_is_left_to_spark(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Row tracking (turned on by hand) is a feature delta-rs cannot write: it writes
    nothing and says so, and the committer runs Spark's MERGE instead."""
    location = str(tmp_path / "usage")
    spark.sql(
        f"CREATE TABLE delta.`{location}` ({DDL}) USING DELTA PARTITIONED BY (event_date) "
        "TBLPROPERTIES ('delta.enableRowTracking' = 'true')"
    )
    row = {field.name: None for field in ARROW_SCHEMA}
    row.update(request_id="r", event_date=pa.scalar(0, pa.date32()).as_py())
    source = pa.Table.from_pylist([row], schema=ARROW_SCHEMA)
    assert USAGE.run_delta_rs(Target(location), source) is Ran.NOT_WRITABLE
    assert spark.read.format("delta").load(location).count() == 0


def test_a_batch_whose_scope_is_too_large_for_delta_rs_is_merged_by_spark(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """delta-rs holds the files a MERGE reads in memory: past the limit, Spark merges that
    batch (its scope clause included), and delta-rs still merges the next small one."""
    from deltalake import DeltaTable

    committer(spark).stop()
    try:
        location = usage_settings(spark).location
        flusher = _committer(spark, tmp_path / "spool", "delta-rs")
        writer = SpoolWriter(tmp_path / "spool", CALL)

        def engine() -> str:
            return str(DeltaTable(location).history(1)[0].get("engineInfo") or "")

        first = Attempt(new_id(), time.time(), 1, 1)
        writer.started(first)
        writer.close()  # the writer looks done: its start goes in as a placeholder
        flusher.flush()
        assert "Spark" not in engine()  # by delta-rs
        # Its finish: the batch's scope is the placeholder's file, one row over the limit.
        monkeypatch.setattr(merges, "DELTA_RS_MAX_TARGET_ROWS", 0)
        writer.finished(Attempt(first.request_id, first.event_time, 1, 1, 200, 5, 2))
        flusher.flush()
        assert "Spark" in engine()
        (row,) = _rows(spark, [first.request_id])
        assert (row.status_code, row.latency_ms) == (200, 5)  # completed, not duplicated
        # The next batch goes to delta-rs again: the engine was not given up.
        monkeypatch.setattr(merges, "DELTA_RS_MAX_TARGET_ROWS", 10**12)
        second = Attempt(new_id(), time.time(), 1, 1, 200, 5, 2)
        writer.started(second)
        writer.finished(second)
        flusher.flush()
        assert "Spark" not in engine()
        assert len(_rows(spark, [second.request_id])) == 1
        writer.close()
    finally:
        committer(spark).start()


def test_the_background_flusher_waits_for_a_paused_task_to_close_its_file(
    spark, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A task whose last requests are still in flight writes nothing for a while: the spool
    is silent, but the task's file is open, so no MERGE runs mid-job. Once the task closes
    its file, the flusher merges within about `idle_s`."""
    committer(spark).stop()  # the session's flusher must not read this spool
    flusher = _committer(spark, tmp_path / "spool", "delta-rs")
    flushes: list[float] = []
    merge = flusher.flush

    def flush(**kw: bool) -> int:
        flushes.append(time.monotonic())
        return merge(**kw)

    try:
        writer = SpoolWriter(tmp_path / "spool", CALL)
        done = Attempt(new_id(), time.time(), 1, 1, 200, 5, 2)
        writer.started(done)
        writer.finished(done)
        writer.started(Attempt(new_id(), time.time(), 1, 1))  # in flight: a long tail
        flusher.flush = flush  # type: ignore[method-assign]
        flusher.start(interval_s=3600, idle_s=0.2)
        time.sleep(2.0)  # ten times idle_s of silence
        assert flushes == []
        writer.close()
        give_up = time.monotonic() + 60
        while not flushes and time.monotonic() < give_up:
            time.sleep(0.1)
        assert flushes, "the spool was never flushed once its file was closed"
        flusher.stop()  # waits for the flush under way
        assert len(_rows(spark, [done.request_id])) == 1
    finally:
        flusher.stop()
        committer(spark).start()
