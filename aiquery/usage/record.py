"""The usage record: one row per HTTP request attempt, defined once.

`COLUMNS` is the single field table. Each column says its Spark SQL type (the Delta DDL),
its Arrow type (the committer's batches, the CLI's reads), where its value comes from and,
for values that change per request, its key in the spool's compact JSON lines:

- `call`: the same for every request of one call site in one task (endpoint, requester,
  tags, Spark task): written once per spool file, in its header line;
- `attempt`: per request: the client fills an `Attempt` (whose fields are exactly these
  columns) and the spool carries each under its short key;
- `derived`: computed from the others when a row is built.

The spool writer (executor side), the spool reader and committer (driver side), live
progress and the report all go through this module, so a column is spelled once.
Runs on both sides: no pyspark here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import orjson
import pyarrow as pa
import pyarrow.compute as pc

TABLE = "ai_gateway.usage"
SYSTEM_TABLE = ("system", "ai_gateway", "usage")
NO_ANSWER = "no answer recorded: the request was in flight, or its task ended first"

Origin = Literal["call", "attempt", "derived"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql_type: str
    arrow_type: pa.DataType
    origin: Origin
    comment: str
    key: str | None = None  # the spool key of an `attempt` column


_S, _I64, _I32 = pa.string(), pa.int64(), pa.int32()

# The first block is Databricks' `system.ai_gateway.usage`, in its order; then aiquery's own.
COLUMNS: tuple[Column, ...] = (
    Column("request_id", "STRING", _S, "attempt", "unique id of this HTTP request attempt (sent as x-request-id)", "id"),
    Column("invocation_id", "STRING", _S, "call", "one ai_query call site in one statement"),
    Column("event_time", "TIMESTAMP", pa.timestamp("us", tz="UTC"), "attempt", "when the request was sent", "t"),
    Column("endpoint_name", "STRING", _S, "call", "the endpoint as ai_query named it"),
    Column("endpoint_id", "STRING", _S, "call", "stable id of the endpoint's name and URL"),
    Column("destination_type", "STRING", _S, "call", "PAY_PER_TOKEN_FOUNDATION_MODEL | EXTERNAL_FOUNDATION_MODEL | CUSTOM_MODEL"),
    Column("destination_name", "STRING", _S, "call", "the serving endpoint or provider called"),
    Column("destination_model", "STRING", _S, "call", "the model id sent upstream"),
    Column("requester", "STRING", _S, "call", "who ran the query (aiquery.usage.requester, else the Spark user)"),
    Column("api_type", "STRING", _S, "call", "e.g. serving-endpoints/invocations, openai/v1/chat/completions"),
    Column("url", "STRING", _S, "call", "the URL called (never with credentials)"),
    Column("user_agent", "STRING", _S, "call", "aiquery/<version>"),
    Column("request_tags", "MAP<STRING, STRING>", pa.map_(_S, _S), "call", "Databricks-Ai-Gateway-Request-Tags of the request"),
    Column("input_tokens", "BIGINT", _I64, "attempt", "NULL when the request failed before the model answered", "in"),
    Column("output_tokens", "BIGINT", _I64, "attempt", "NULL when the request failed before the model answered", "out"),
    Column("total_tokens", "BIGINT", _I64, "derived", "input_tokens + output_tokens"),
    Column("token_details", "MAP<STRING, BIGINT>", pa.map_(_S, _I64), "derived", "reserved; NULL"),
    Column("status_code", "INT", _I32, "attempt", "HTTP status; NULL when no answer arrived (timeout, dropped, task died)", "s"),
    Column("latency_ms", "BIGINT", _I64, "attempt", "request sent → answer read", "l"),
    Column("time_to_first_byte_ms", "BIGINT", _I64, "attempt", "request sent → response headers", "fb"),
    Column("routing_information", "STRING", _S, "attempt", "the server's own request id, when it sent one", "srv"),
    Column("event_date", "DATE", pa.date32(), "derived", "partition column: the UTC date of event_time"),
    Column("tokens_estimated", "BOOLEAN", pa.bool_(), "attempt", "token counts are the (len + 1) // 4 estimate", "est"),
    Column("rows", "INT", _I32, "attempt", "table rows this request served (embeddings batch many)", "r"),
    Column("attempt", "INT", _I32, "attempt", "1 for the first try of a request, 2+ for retries", "a"),
    Column("error_message", "STRING", _S, "attempt", "why the attempt failed; NULL on success", "err"),
    Column("spark_app_id", "STRING", _S, "call", "the Spark application that sent it"),
    Column("spark_task", "STRING", _S, "call", "stage.partition.attempt of the Spark task that sent it"),
)  # fmt: skip


def _table(columns: tuple[Column, ...]) -> tuple[tuple[str, ...], str, pa.Schema]:
    """A table's column names, its Delta DDL and its Arrow schema."""
    return (
        tuple(c.name for c in columns),
        ", ".join(f"{c.name} {c.sql_type}" for c in columns),
        pa.schema([pa.field(c.name, c.arrow_type) for c in columns]),
    )


NAMES, DDL, ARROW_SCHEMA = _table(COLUMNS)


def new_id() -> str:
    """A record's key (`request_id`, `saved_id`): 32 hex digits laid out as a UUIDv7
    (RFC 9562), the Unix time in milliseconds and then 74 random bits. Random, so ids from
    every process and host stay unique; time first, so the ids one flush commits fall in a
    narrow range and its MERGE reads only the files written about then, not the whole day
    (`usage.driver.merges`)."""
    bits = int.from_bytes(os.urandom(10), "big")
    variant = (bits & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
    return f"{time.time_ns() // 1_000_000:012x}7{bits >> 68:03x}{variant:016x}"


_KEYS: dict[str, str] = {c.name: c.key for c in COLUMNS if c.key is not None}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP request attempt, as the client records it: the `attempt` columns."""

    request_id: str
    event_time: float  # epoch seconds, when it was sent
    attempt: int
    rows: int
    status_code: int | None = None  # None: no HTTP answer (timeout, connection error)
    latency_ms: int | None = None
    time_to_first_byte_ms: int | None = None
    routing_information: str | None = None  # the server's request id
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_estimated: bool | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """What every request of one call site in one task has in common: the `call` columns."""

    invocation_id: str
    endpoint_name: str
    endpoint_id: str
    destination_type: str
    destination_name: str
    destination_model: str
    requester: str
    api_type: str
    url: str
    user_agent: str
    request_tags: Mapping[str, str] | None
    spark_app_id: str | None
    spark_task: str | None = None


def _origin_names(origin: Origin) -> set[str]:
    return {c.name for c in COLUMNS if c.origin == origin}


# The dataclasses are the table's columns, no more and no less.
assert {f.name for f in dataclasses.fields(Attempt)} == _origin_names("attempt") == set(_KEYS)
assert {f.name for f in dataclasses.fields(Call)} == _origin_names("call")

# --- rows answered without a request: the saved-rows table beside the usage table -------

SAVED_TABLE = "ai_gateway.usage_saved"
DUPLICATE, CACHE = "duplicate", "cache"


@dataclass(frozen=True, slots=True)
class Saved:
    """Rows of one task answered without a request of their own: duplicates of an input the
    task sent (or is sending), or answers from the response cache. Not requests, so not
    usage rows; the report counts them from their own table."""

    saved_id: str  # `new_id`: the key that keeps a re-read spool line from counting twice
    event_time: float  # epoch seconds
    rows: int
    source: str  # DUPLICATE | CACHE


# Its table: the call's who and where, then the Saved fields.
SAVED_COLUMNS: tuple[Column, ...] = (
    Column("saved_id", "STRING", _S, "attempt", "unique id of this record", "id"),
    Column("event_time", "TIMESTAMP", pa.timestamp("us", tz="UTC"), "attempt", "when the rows were answered", "t"),
    Column("invocation_id", "STRING", _S, "call", "one ai_query call site in one statement"),
    Column("endpoint_name", "STRING", _S, "call", "the endpoint as ai_query named it"),
    Column("requester", "STRING", _S, "call", "who ran the query"),
    Column("request_tags", "MAP<STRING, STRING>", pa.map_(_S, _S), "call", "the request tags the rows would have sent"),
    Column("source", "STRING", _S, "attempt", "duplicate (an identical input in the same task) | cache", "src"),
    Column("rows", "INT", _I32, "attempt", "table rows answered without a request", "r"),
    Column("event_date", "DATE", pa.date32(), "derived", "partition column: the UTC date of event_time"),
    Column("spark_app_id", "STRING", _S, "call", "the Spark application"),
    Column("spark_task", "STRING", _S, "call", "stage.partition.attempt of the Spark task"),
)  # fmt: skip
SAVED_NAMES, SAVED_DDL, SAVED_ARROW_SCHEMA = _table(SAVED_COLUMNS)
_SAVED_KEYS = tuple((c.name, c.key) for c in SAVED_COLUMNS if c.key is not None)
assert {f.name for f in dataclasses.fields(Saved)} == {name for name, _ in _SAVED_KEYS}


def saved_table_location(usage_location: str) -> str:
    """The saved-rows table's directory: beside the usage table's (`.../usage_saved`)."""
    return usage_location.rstrip("/") + "_saved"


# --- answers for the response cache: its table beside the usage table -------------------

CACHE_TABLE = "ai_gateway.response_cache"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One input's answer, for the response cache (`aiquery.client.cache`)."""

    key: str  # the content hash of endpoint, model, parameters and input
    answer: str  # the answer, encoded by `aiquery.client.cache.encode_answer`
    created_at: float  # epoch seconds


CACHE_COLUMNS: tuple[Column, ...] = (
    Column("key", "STRING", _S, "attempt", "sha256 of endpoint, model, parameters and input", "key"),
    Column("endpoint_name", "STRING", _S, "call", "partition column: the endpoint as named"),
    Column("answer", "STRING", _S, "attempt", "the answer (JSON; vectors as base64 float32)", "a"),
    Column("created_at", "TIMESTAMP", pa.timestamp("us", tz="UTC"), "attempt", "when it was answered", "t"),
)  # fmt: skip
_, CACHE_DDL, CACHE_ARROW_SCHEMA = _table(CACHE_COLUMNS)
_CACHE_KEYS = tuple((c.name, c.key) for c in CACHE_COLUMNS if c.key is not None)
assert {f.name for f in dataclasses.fields(CacheEntry)} == {name for name, _ in _CACHE_KEYS}


def cache_table_location(usage_location: str) -> str:
    """The response cache's directory: beside the usage table's (`.../response_cache`)."""
    return usage_location.rstrip("/").rsplit("/", 1)[0] + "/response_cache"


def cache_line(entry: CacheEntry) -> bytes:
    return _line({"k": CACHED, **{key: getattr(entry, name) for name, key in _CACHE_KEYS}})


def cache_row(call: Call, entry: CacheEntry) -> dict[str, Any]:
    """The response cache's row for `entry`."""
    return {
        "key": entry.key,
        "endpoint_name": call.endpoint_name,
        "answer": entry.answer,
        "created_at": datetime.fromtimestamp(entry.created_at, UTC),
    }


# --- the spool's lines: a header ("h") per file, then "s" (started) and "f" (finished) ----
# --- per request, "v" (saved) per group of rows answered without one, "c" per answer ----
# --- kept for the response cache ------------------------------------------------------

HEADER, STARTED, FINISHED, SAVED, CACHED = "h", "s", "f", "v", "c"


def header_line(call: Call) -> bytes:
    return _line({"k": HEADER, **dataclasses.asdict(call)})


# (field, spool key) of every Attempt field, looked up once: lines are written per request.
_ATTEMPT_KEYS = tuple((f.name, _KEYS[f.name]) for f in dataclasses.fields(Attempt))
_ATTEMPT_SHORT = tuple(key for _, key in _ATTEMPT_KEYS)  # Attempt's fields, in order


def attempt_line(kind: str, attempt: Attempt) -> bytes:
    """A started or finished line: each set value under its column's short key."""
    values = {key: v for name, key in _ATTEMPT_KEYS if (v := getattr(attempt, name)) is not None}
    return _line({"k": kind, **values})


def saved_line(saved: Saved) -> bytes:
    return _line({"k": SAVED, **{key: getattr(saved, name) for name, key in _SAVED_KEYS}})


def _line(values: Mapping[str, Any]) -> bytes:
    """One JSON line: orjson writes one in ~0.4 µs, `json` in ~4 (two lines a request)."""
    try:
        return orjson.dumps(values, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # a lone surrogate, an integer past 64 bits: said as json does
        return (json.dumps(values, separators=(",", ":")) + "\n").encode()


def parse_line(raw: bytes) -> tuple[str, Call | Attempt | Saved | CacheEntry]:
    """(kind, what the line holds) of one whole spool line."""
    values = json.loads(raw)
    kind = values.pop("k")
    if kind == HEADER:
        return kind, Call(**values)
    if kind == SAVED:
        return kind, Saved(**{name: values[key] for name, key in _SAVED_KEYS})
    if kind == CACHED:
        return kind, CacheEntry(**{name: values[key] for name, key in _CACHE_KEYS})
    return kind, Attempt(*map(values.get, _ATTEMPT_SHORT))


def fields_of(record: Call | Saved) -> dict[str, Any]:
    """A record's fields, shallow (`dataclasses.asdict` deep-copies every value)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


class Request(NamedTuple):
    """A request as the spool tells it: its call site's `Call`, its `Attempt`, and whether
    its finish was read (if not, its row is a placeholder: no answer recorded)."""

    call: Call
    attempt: Attempt
    finished: bool


# What a started line holds: all a placeholder keeps of its attempt.
_STARTED = ("request_id", "event_time", "attempt", "rows")
_CALL_NAMES = tuple(f.name for f in dataclasses.fields(Call))


def usage_table(requests: Sequence[Request]) -> pa.Table:
    """The usage table's rows for `requests`, built column by column: a dict per row and
    `Table.from_pylist` took ~20 us a row, most of a flush's time; this takes 6-9."""
    attempts = [r.attempt for r in requests]
    done = [r.finished for r in requests]
    values: dict[str, Any] = {}
    for name, _ in _ATTEMPT_KEYS:
        column = [getattr(a, name) for a in attempts]
        if name not in _STARTED:
            column = [v if d else None for v, d in zip(column, done, strict=True)]
        values[name] = column
    for name in _CALL_NAMES:
        values[name] = [getattr(r.call, name) for r in requests]
    values["request_tags"] = [dict(tags) if tags else None for tags in values["request_tags"]]
    seconds = pa.array(values["event_time"], pa.float64())
    micros = pc.cast(pc.round(pc.multiply(seconds, 1e6)), pa.int64())
    values["event_time"] = micros.cast(ARROW_SCHEMA.field("event_time").type)
    values["event_date"] = pc.cast(values["event_time"], pa.date32())
    values["total_tokens"] = [
        None if i is None else i + (o or 0)
        for i, o in zip(values["input_tokens"], values["output_tokens"], strict=True)
    ]
    values["token_details"] = pa.nulls(len(requests), ARROW_SCHEMA.field("token_details").type)
    values["tokens_estimated"] = [
        bool(e) if d else None for e, d in zip(values["tokens_estimated"], done, strict=True)
    ]
    values["error_message"] = [
        e if d else NO_ANSWER for e, d in zip(values["error_message"], done, strict=True)
    ]
    arrays = [
        found if isinstance(found := values[f.name], pa.Array) else pa.array(found, f.type)
        for f in ARROW_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def saved_row(call: Call, saved: Saved) -> dict[str, Any]:
    """The saved-rows table's row for `saved`."""
    when = datetime.fromtimestamp(saved.event_time, UTC)
    values: dict[str, Any] = {
        **fields_of(call),
        **fields_of(saved),
        "event_time": when,
        "event_date": when.date(),
        "request_tags": dict(call.request_tags) if call.request_tags else None,
    }
    return {name: values[name] for name in SAVED_NAMES}
