"""The usage record is defined once: its field table makes the DDL, the Arrow schema, the
spool's lines and the rows, and each of those agrees with it."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest

from aiquery.usage.record import (
    ARROW_SCHEMA,
    COLUMNS,
    DDL,
    FINISHED,
    HEADER,
    NAMES,
    NO_ANSWER,
    STARTED,
    Attempt,
    Call,
    Request,
    attempt_line,
    header_line,
    new_id,
    parse_line,
    usage_table,
)

CALL = Call(
    invocation_id="inv",
    endpoint_name="databricks-gpt-5-4",
    endpoint_id="abc",
    destination_type="PAY_PER_TOKEN_FOUNDATION_MODEL",
    destination_name="databricks-gpt-5-4",
    destination_model="databricks-gpt-5-4",
    requester="ana",
    api_type="serving-endpoints/invocations",
    url="http://127.0.0.1:1/serving-endpoints/databricks-gpt-5-4/invocations",
    user_agent="aiquery/0.1.0",
    request_tags={"team": "ml"},
    spark_app_id="app-1",
    spark_task="3.1.0",
)
DONE = Attempt(
    request_id="r1",
    event_time=1_800_000_000.25,
    attempt=2,
    rows=1,
    status_code=200,
    latency_ms=104,
    time_to_first_byte_ms=101,
    routing_information="srv-9",
    input_tokens=12,
    output_tokens=5,
    tokens_estimated=False,
)


def test_the_ddl_and_the_arrow_schema_list_every_column_in_table_order() -> None:
    positions = [DDL.index(f"{c.name} {c.sql_type}") for c in COLUMNS]
    assert positions == sorted(positions) and DDL.startswith("request_id STRING, ")
    assert ARROW_SCHEMA.names == list(NAMES)
    # Databricks' columns come first, in Databricks' order.
    assert NAMES[:3] == ("request_id", "invocation_id", "event_time")
    assert NAMES.index("routing_information") < NAMES.index("event_date")


def test_the_record_types_hold_exactly_the_columns_of_their_origin() -> None:
    by_origin = {o: {c.name for c in COLUMNS if c.origin == o} for o in ("call", "attempt")}
    assert {f.name for f in dataclasses.fields(Call)} == by_origin["call"]
    assert {f.name for f in dataclasses.fields(Attempt)} == by_origin["attempt"]
    keys = [c.key for c in COLUMNS if c.key is not None]
    assert len(keys) == len(set(keys)) == len(by_origin["attempt"])


def test_spool_lines_round_trip_with_short_keys() -> None:
    line = attempt_line(FINISHED, DONE)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert json.loads(line)["s"] == 200 and "status_code" not in json.loads(line)
    assert parse_line(line) == (FINISHED, DONE)
    started = Attempt("r2", 1.5, 1, 3)
    assert parse_line(attempt_line(STARTED, started)) == (STARTED, started)
    assert parse_line(header_line(CALL)) == (HEADER, CALL)


@pytest.mark.parametrize(
    ("error", "tokens"),
    [
        ("plain", 7),
        ("réponse 応答 🙂", 7),
        ('quotes " and \\ and \n newline', 7),
        ("a lone \ud800 surrogate", 7),  # orjson refuses it: written by json
        ("plain", 2**70),  # likewise
    ],
)
def test_any_text_and_any_count_a_server_sends_survives_its_spool_line(
    error: str, tokens: int
) -> None:
    attempt = Attempt("r3", 1.5, 1, 1, 500, 12.5, 3, input_tokens=tokens, error_message=error)
    line = attempt_line(FINISHED, attempt)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert parse_line(line) == (FINISHED, attempt)


def _row(attempt: Attempt, *, finished: bool) -> dict[str, Any]:
    (row,) = usage_table([Request(CALL, attempt, finished)]).to_pylist()
    return row


def test_rows_carry_every_column_and_build_an_arrow_table() -> None:
    finished = _row(DONE, finished=True)
    placeholder = _row(Attempt("r2", 1_800_000_001.0, 1, 1), finished=False)
    assert list(finished) == list(NAMES) == list(placeholder)
    assert finished["event_time"] == datetime.fromtimestamp(DONE.event_time, UTC)
    assert finished["event_date"] == finished["event_time"].date()
    assert (finished["total_tokens"], finished["status_code"], finished["attempt"]) == (17, 200, 2)
    assert dict(finished["request_tags"]) == {"team": "ml"} and finished["error_message"] is None
    assert placeholder["status_code"] is None and placeholder["latency_ms"] is None
    assert placeholder["error_message"] == NO_ANSWER and placeholder["total_tokens"] is None
    table = usage_table([Request(CALL, DONE, True), Request(CALL, DONE, False)])
    assert table.schema == ARROW_SCHEMA and table.column("rows").to_pylist() == [1, 1]
    assert usage_table([]).num_rows == 0


def test_a_placeholder_ignores_anything_but_what_a_started_line_holds() -> None:
    # A finished attempt read as unfinished (its finish line in a later part of the file)
    # must not claim an answer yet.
    row = _row(DONE, finished=False)
    assert row["status_code"] is None and row["input_tokens"] is None
    assert row["tokens_estimated"] is None and row["error_message"] == NO_ANSWER


def test_record_ids_are_uuid7s_in_time_order_and_unique() -> None:
    before = time.time_ns() // 1_000_000
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    after = time.time_ns() // 1_000_000
    for found in (first, second):
        parsed = uuid.UUID(hex=found)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert len(found) == 32 and found == parsed.hex
        assert before <= int(found[:12], 16) <= after  # its millisecond
    assert first < second  # a later millisecond sorts later
    assert len({new_id() for _ in range(10_000)}) == 10_000


def _batch(ids: list[str], days: list[date]) -> pa.Table:
    rows = []
    for request_id, day in zip(ids, days, strict=True):
        row = dict.fromkeys(NAMES)
        row.update(request_id=request_id, event_date=day)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)


def test_a_merge_scope_names_the_batch_days_and_key_range() -> None:
    from aiquery.usage.driver.merges import CACHED, USAGE

    across_midnight = _batch(
        ["0b", "0a", "0c"], [date(2026, 12, 2), date(2026, 12, 3), date(2026, 12, 2)]
    )
    assert USAGE.scope(across_midnight) == (
        " AND t.event_date IN (DATE'2026-12-02', DATE'2026-12-03')"
        " AND t.request_id BETWEEN '0a' AND '0c'"
    )
    injected = _batch(["0a", "z' OR 1=1 --"], [date(2026, 12, 2)] * 2)
    assert "BETWEEN" not in USAGE.scope(injected)  # never inlined
    assert USAGE.scope(_batch([], [])) == ""
    assert CACHED.key is None  # its keys are hashes: a range would hold them all


def test_the_rows_in_a_batch_scope_are_counted_from_the_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Files of the batch's day whose key range meets the batch's are counted; other days,
    and files of the same day written at other times, are not."""
    from deltalake import DeltaTable, write_deltalake

    from aiquery.usage.driver.merges import USAGE

    today, yesterday = date(2026, 12, 3), date(2026, 12, 2)
    location = str(tmp_path / "usage")
    for ids, day in [(["01", "02", "03"], today), (["07", "08"], today), (["02", "09"], yesterday)]:
        write_deltalake(
            location, _batch(ids, [day] * len(ids)), partition_by=["event_date"], mode="append"
        )
    table = DeltaTable(location)

    def counted(ids: list[str], day: date = today) -> int:
        return USAGE.rows_in_scope(table, _batch(ids, [day] * len(ids)))

    assert counted(["025"]) == 3  # the first file only
    assert counted(["05", "06"]) == 0  # between the two files: none read
    assert counted(["00", "99"]) == 5  # both
    assert counted(["02"], yesterday) == 2
