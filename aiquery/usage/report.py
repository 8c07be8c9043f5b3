"""Reading the usage table without Spark, for `aiquery usage` and the dashboard.

A JVM start costs ~15 s; reading the table's Delta log and its Parquet files with pyarrow
(`usage.deltalog`) costs milliseconds, so the CLI reads directly; delta-rs only for a
table that reader does not handle. Committing spooled records still needs Spark (`--flush`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from aiquery.endpoints.catalog import Price, price_of
from aiquery.errors import ConfigError
from aiquery.usage import deltalog
from aiquery.usage.record import saved_table_location

log = logging.getLogger("aiquery")

GROUPS = ("endpoint", "day", "requester", "status", "api_type")
_COLUMN = {"endpoint": "endpoint_name", "requester": "requester", "api_type": "api_type"}


def default_location() -> str:
    """The usage table: a directory or a URL (s3a://, abfss://, ...), kept as it is."""
    return os.environ.get("AIQUERY_USAGE_LOCATION") or str(
        Path("spark-warehouse") / "ai_gateway.db" / "usage"
    )


def default_spool() -> Path:
    return Path(
        os.environ.get("AIQUERY_USAGE_SPOOL") or Path("spark-warehouse") / "_aiquery_usage_spool"
    )


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """`2026-11-01`, `2026-11-01T12:00`, or a span back from now: `7d`, `12h`, `30m`."""
    now = now or datetime.now(UTC)
    span = re.fullmatch(r"(\d+)\s*([dhm])", text.strip())
    if span:
        amount, unit = int(span.group(1)), span.group(2)
        return now - timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"cannot read the time {text!r}: use a date (2026-11-01), a date and time "
            "(2026-11-01T12:00) or a span back from now (7d, 12h, 30m)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_rows(
    location: str | Path, *, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Usage rows between `since` and `until` (UTC), as dicts with the table's columns."""
    try:
        return _load(str(location), since, until)
    except deltalog.NoTableError as e:
        raise ConfigError(
            f"no usage table at {location} ({e}): run a job first, or pass --table / set "
            "AIQUERY_USAGE_LOCATION to the table's directory"
        ) from None


def load_saved(
    location: str | Path, *, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """The saved-rows records (rows answered without a request) beside the usage table at
    `location`; none when no job has saved a row yet."""
    try:
        return _load(saved_table_location(str(location)), since, until)
    except deltalog.NoTableError:
        return []


def _load(location: str, since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
    filesystem, base = _filesystem(location)
    try:
        files = deltalog.snapshot(filesystem, base).files
    except deltalog.UnsupportedTableError as e:
        log.debug("reading %s with delta-rs: %s", location, e)
        data = _read_by_delta_rs(location)
    else:
        days = (since and since.astimezone(UTC).date(), until and until.astimezone(UTC).date())
        data = _read_files([f for f in files if _may_hold(f, *days)], filesystem, base)
    rows: list[dict[str, Any]] = data.to_pylist()
    for row in rows:
        when = row["event_time"]
        if isinstance(when, datetime) and when.tzinfo is None:
            row["event_time"] = when.replace(tzinfo=UTC)
        tags = row.get("request_tags")
        if isinstance(tags, list):  # Arrow maps arrive as (key, value) pairs
            row["request_tags"] = dict(tags)
    return [
        r
        for r in rows
        if (since is None or r["event_time"] >= since)
        and (until is None or r["event_time"] < until)
    ]


def _may_hold(path: str, first: date | None, last: date | None) -> bool:
    """False only for a file whose event_date partition lies outside [first, last]."""
    day = _EVENT_DATE.search(path)
    if day is None:
        return True
    value = date.fromisoformat(day[1])
    return (first is None or value >= first) and (last is None or value <= last)


_EVENT_DATE = re.compile(r"event_date=(\d{4}-\d{2}-\d{2})/")


def _read_files(files: list[str], filesystem: pafs.FileSystem, base: str) -> pa.Table:
    if not files:
        return pa.table({"event_time": pa.array([], pa.timestamp("us", "UTC"))})
    partitioning = ds.partitioning(pa.schema([("event_date", pa.date32())]), flavor="hive")
    dataset = ds.dataset(
        files,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=base.rstrip("/"),
        filesystem=filesystem,
    )
    return dataset.to_table()


def _read_by_delta_rs(location: str) -> pa.Table:
    """A table the log reader does not handle (deletion vectors, column mapping, ...), read
    by delta-rs' query engine, which applies them. Not its pyarrow scan (`to_pyarrow_table`),
    which aborted 39 of 60 short processes at exit (deltalake 1.6.6, pyarrow 26.0.1; this
    query engine: none of 60)."""
    from deltalake import DeltaTable, QueryBuilder

    query = QueryBuilder().register("usage", DeltaTable(location))
    return pa.table(query.execute("SELECT * FROM usage").read_all())


def _filesystem(table_uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of a table: local, or object storage.

    s3a:// (Hadoop's name, as Spark wrote it) is S3 to pyarrow; both pyarrow and delta-rs
    read the standard AWS_* variables (AWS_ENDPOINT_URL, AWS_REGION, keys, AWS_ALLOW_HTTP)."""
    if table_uri.startswith("file:"):
        return pafs.LocalFileSystem(), os.path.abspath(unquote(urlparse(table_uri).path))
    if "://" not in table_uri:
        return pafs.LocalFileSystem(), os.path.abspath(table_uri)
    filesystem, path = pafs.FileSystem.from_uri(_pyarrow_uri(table_uri))
    return filesystem, path


def _pyarrow_uri(uri: str) -> str:
    return "s3://" + uri.removeprefix("s3a://") if uri.startswith("s3a://") else uri


def _key(row: Mapping[str, Any], group: str) -> str:
    if group == "day":
        when = row["event_time"]
        return str(when.date() if isinstance(when, datetime) else date.today())
    if group == "status":
        if "saved_id" in row:  # rows answered without a request
            return "no request"
        return "no answer" if row["status_code"] is None else str(row["status_code"])
    column = _COLUMN.get(group)
    if column is not None:
        return str(row.get(column) or "")
    tags = row.get("request_tags") or {}
    return str(tags.get(group.removeprefix("tag:"), "(none)"))


def price_rows(rows: Sequence[dict[str, Any]], prices: Mapping[str, Price]) -> None:
    """Set each usage row's `cost_usd` from its endpoint's price (None: price unknown)."""
    for row in rows:
        price = price_of(prices, row.get("endpoint_name") or "")
        row["cost_usd"] = (
            None if price is None else price.cost(row.get("input_tokens"), row.get("output_tokens"))
        )


def summarize(
    rows: Sequence[Mapping[str, Any]],
    by: Sequence[str],
    saved: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One line per group: requests, errors, input/output tokens, cost (of rows priced by
    `price_rows`), rows answered without a request, p50/p95 latency."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(_key(row, g) for g in by), []).append(row)
    saved_rows: dict[tuple[str, ...], int] = {}
    for record in saved:
        key = tuple(_key(record, g) for g in by)
        groups.setdefault(key, [])
        saved_rows[key] = saved_rows.get(key, 0) + (record.get("rows") or 0)
    out = []
    for key in sorted(groups):
        members = groups[key]
        latencies = sorted(r["latency_ms"] for r in members if r.get("latency_ms") is not None)
        costs = [r["cost_usd"] for r in members if r.get("cost_usd") is not None]
        out.append(
            {
                **dict(zip(by, key, strict=True)),
                "requests": len(members),
                "errors": sum(1 for r in members if r.get("status_code") != 200),
                "input_tokens": sum(r.get("input_tokens") or 0 for r in members),
                "output_tokens": sum(r.get("output_tokens") or 0 for r in members),
                "cost_usd": Dollars(sum(costs)) if costs else None,
                "rows_saved": saved_rows.get(key, 0),
                "p50_ms": _percentile(latencies, 0.50),
                "p95_ms": _percentile(latencies, 0.95),
            }
        )
    return out


class Dollars(float):
    """A cost in US dollars: shown with cents, and fractions of a cent when that small."""

    def __str__(self) -> str:
        return f"{self:,.2f}" if self >= 1 or not self else f"{self:.4f}"


def _percentile(values: Sequence[int], q: float) -> int | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def format_table(lines: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table, numbers right-aligned."""
    if not lines:
        return "(no usage in this range)"
    headers = list(lines[0])
    cells = [[_cell(line[h]) for h in headers] for line in lines]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(line[h], int | float) or line[h] is None for line in lines) for h in headers
    ]

    def fmt(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *(fmt(row) for row in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def prices() -> dict[str, Price]:
    """Each configured endpoint's price by name: the endpoints file's, or the documented
    defaults of the Databricks names."""
    from aiquery.endpoints.catalog import DEFAULT_PRICES
    from aiquery.endpoints.registry import load_registry

    found: dict[str, Price] = dict(DEFAULT_PRICES)
    try:
        endpoints = load_registry().endpoints
    except ConfigError as e:  # the report still reads; costs use the defaults
        log.warning("aiquery: endpoint prices from the defaults only (%s)", e)
        endpoints = {}
    found.update({name: e.price for name, e in endpoints.items() if e.price is not None})
    return found
