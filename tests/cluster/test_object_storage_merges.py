"""delta-rs merging usage on S3 (moto's server, a real process on loopback), with the storage
options the driver derives from the S3A settings Spark was given: writers racing for the
same versions each commit once (a conditional PUT), and a store delta-rs cannot reach hands
the table to Spark without showing a credential."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

import pyarrow as pa
import pytest
from standalone import ObjectStorage

from aiquery.usage.driver import merges
from aiquery.usage.driver.merges import USAGE, Ran
from aiquery.usage.driver.targets import Target, delta_rs_target
from aiquery.usage.record import ARROW_SCHEMA, new_id
from aiquery.usage.report import load_rows

WRITERS = 4


def _target(storage: ObjectStorage) -> Target:
    """The usage table's target as the driver derives it from spark-submit's S3A settings."""
    settings = dict(s.removeprefix("spark.hadoop.").split("=", 1) for s in storage.spark_conf())
    target = delta_rs_target(storage.new_root() + "/warehouse/ai_gateway.db/usage", settings.get)
    assert target is not None, "delta-rs should write this S3 table"
    return target


def _rows(ids: list[str], *, finished: bool) -> pa.Table:
    today = dt.date.today()
    rows: list[dict[str, Any]] = []
    for request_id in ids:
        row: dict[str, Any] = {field.name: None for field in ARROW_SCHEMA}
        row.update(request_id=request_id, event_date=today, endpoint_name="databricks-gpt-5-4")
        if finished:
            row.update(status_code=200, latency_ms=40)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)


def test_delta_rs_writers_racing_on_s3_record_each_request_once(
    object_storage: ObjectStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltalake import DeltaTable, write_deltalake

    target = _target(object_storage)
    write_deltalake(
        target.uri,
        ARROW_SCHEMA.empty_table(),
        partition_by=["event_date"],
        storage_options=dict(target.options),
    )
    lost_races: list[str] = []
    real = merges.is_conflict

    def counted(error: BaseException) -> bool:
        if real(error):
            lost_races.append(type(error).__name__)
            return True
        return False

    monkeypatch.setattr(merges, "is_conflict", counted)
    # Each writer: 100 requests of its own, and the same 50 placeholders every writer has
    # (a started request seen by each flush), finished by the last writer only.
    shared = [new_id() for _ in range(50)]
    own = [[new_id() for _ in range(100)] for _ in range(WRITERS)]
    batches = [
        pa.concat_tables([_rows(mine, finished=True), _rows(shared, finished=n == WRITERS - 1)])
        for n, mine in enumerate(own)
    ]
    start = threading.Barrier(WRITERS)
    results: list[Ran | BaseException] = []

    def write(batch: pa.Table) -> None:
        start.wait()
        try:
            results.append(USAGE.run_delta_rs(target, batch))
        except BaseException as e:  # reported by the assertion below
            results.append(e)

    threads = [threading.Thread(target=write, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [Ran.MERGED] * WRITERS
    assert lost_races, "no writer lost a race for a version: the test proves nothing"

    for name, value in object_storage.env({}).items():
        monkeypatch.setenv(name, value)
    rows = load_rows(target.uri)
    ids = [row["request_id"] for row in rows]
    assert sorted(ids) == sorted([*shared, *(i for mine in own for i in mine)])  # each once
    assert all(row["status_code"] == 200 for row in rows)  # placeholders completed
    # One version per writer after the table's first: none was written over.
    table = DeltaTable(target.uri, storage_options=dict(target.options))
    assert table.version() == WRITERS
    assert len(table.history()) == WRITERS + 1


def test_a_store_delta_rs_cannot_reach_goes_to_spark_without_showing_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = {
        "fs.s3a.endpoint": "http://127.0.0.1:9",  # nothing listens on the discard port
        "fs.s3a.path.style.access": "true",
        "fs.s3a.access.key": "AKIANOTSHOWN",
        "fs.s3a.secret.key": "secret-not-shown",
    }
    target = delta_rs_target("s3a://lake/usage", settings.get)
    assert target is not None
    with caplog.at_level(logging.WARNING, logger="aiquery"):
        assert USAGE.run_delta_rs(target, _rows(["r"], finished=True)) is Ran.NOT_WRITABLE
    (record,) = caplog.records
    message = record.getMessage()
    assert "Spark merges s3a://lake/usage from now on" in message
    assert "Connection refused" in message
    assert "AKIANOTSHOWN" not in message and "secret-not-shown" not in message
    assert "\x1b[" not in message
