"""Answers as Spark values, on executors: the model's text parsed into returnType, then Arrow.

`parse_answer` and `to_arrow_array` run inside the Arrow UDF and need no SparkContext.
`AnswerCastError` (a `ValueError`) says an answer does not fit returnType; it never quotes
the answer, which may carry user data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    MapType,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from aiquery.protocols.common import unfenced
from aiquery.spark import arrays
from aiquery.spark.ddl import (
    INT_RANGES,
    INTEGRAL_TYPES,
    STRING_TYPES,
    TEMPORAL_TYPES,
    field_path,
    spark_type_sql,
)

_FLOAT32_MAX = 3.4028234663852886e38


class AnswerCastError(ValueError):
    """The model's answer cannot be parsed into the returnType.

    The message says what was expected and what kind of JSON was found (e.g. "expected INT,
    got a JSON string"), never the answer itself; callers add the error class and endpoint.
    """

    def __init__(self, return_type: str, detail: str) -> None:
        self.return_type = return_type
        super().__init__(detail)


class _MismatchError(Exception):
    """Raised inside the converters; `parse_answer` turns it into a AnswerCastError."""


def parse_answer(text: str, t: DataType) -> Any:
    """The model's answer as a Python value of Spark type `t`, like `from_json`.

    STRING is the text itself. Other types are JSON-decoded, after dropping surrounding
    whitespace and a ```json fence; DATE/TIMESTAMP also take bare ISO text. Numbers must fit the
    type (DECIMAL is rounded half-up to its scale); struct fields match by exact name, missing
    ones are NULL and extra keys are ignored; JSON null is NULL. Structs become dicts.
    Raises AnswerCastError.
    """
    if isinstance(t, STRING_TYPES):
        return text
    try:
        body = unfenced(text)
        if isinstance(t, TEMPORAL_TYPES) and not body.startswith('"'):
            return None if body == "null" else _convert(body, t, "")
        return _convert(_loads(body, t), t, "")
    except _MismatchError as e:
        raise AnswerCastError(spark_type_sql(t), str(e)) from None


def _loads(body: str, t: DataType) -> Any:
    # Decimal keeps every digit the model wrote, for DECIMAL(38, s) and exact range checks.
    try:
        return json.loads(body, parse_float=Decimal)
    except json.JSONDecodeError as e:
        where = f"{e.msg} at line {e.lineno} column {e.colno}"
        raise _MismatchError(
            f"answer is not valid JSON for {spark_type_sql(t)} ({where})"
        ) from None
    except (ValueError, RecursionError):
        raise _MismatchError(f"answer is not valid JSON for {spark_type_sql(t)}") from None


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "a JSON boolean"
    if isinstance(v, int | Decimal):
        whole = isinstance(v, int) or v == v.to_integral_value()
        return "an integral JSON number" if whole else "a fractional JSON number"
    if isinstance(v, float):
        return "a non-finite JSON number"
    if isinstance(v, str):
        return "a JSON string"
    return "a JSON array" if isinstance(v, list) else "a JSON object"


def _mismatch(t: DataType, path: str, found: str) -> _MismatchError:
    where = f" at `{path}`" if path else ""
    return _MismatchError(f"expected {spark_type_sql(t)}{where}, got {found}")


def _convert(v: Any, t: DataType, path: str) -> Any:
    if v is None:
        return None
    if isinstance(t, STRING_TYPES):
        # Like from_json, a non-string JSON value in a STRING field is kept as its JSON text.
        return v if isinstance(v, str) else _dumps(v)
    container = {StructType: dict, ArrayType: list, MapType: dict}.get(type(t))
    if container is not None and not isinstance(v, container):
        raise _mismatch(t, path, _kind(v))
    if isinstance(t, StructType):
        return {
            f.name: _convert(v.get(f.name), f.dataType, field_path(path, f.name)) for f in t.fields
        }
    if isinstance(t, ArrayType):
        return [_convert(x, t.elementType, f"{path}[{i}]") for i, x in enumerate(v)]
    if isinstance(t, MapType):
        return {k: _convert(x, t.valueType, f"{path}.value") for k, x in v.items()}
    return _convert_atomic(v, t, path)


def _convert_atomic(v: Any, t: DataType, path: str) -> Any:
    if isinstance(t, BooleanType) and isinstance(v, bool):
        return v
    if isinstance(t, TEMPORAL_TYPES) and isinstance(v, str):
        return _parse_temporal(v.strip(), t, path)
    number = isinstance(v, int | Decimal) and not isinstance(v, bool)
    if (
        isinstance(t, INTEGRAL_TYPES)
        and number
        and (isinstance(v, int) or v == v.to_integral_value())
    ):
        lo, hi = INT_RANGES[type(t)]
        if not lo <= v <= hi:
            raise _mismatch(t, path, f"a JSON number outside [{lo}, {hi}]")
        return int(v)
    if isinstance(t, FloatType | DoubleType) and (number or isinstance(v, float)):
        # NaN and Infinity written as such are kept; finite numbers must not overflow.
        f = math.inf if isinstance(v, int) and abs(v) >= 2**1024 else float(v)
        limit = _FLOAT32_MAX if isinstance(t, FloatType) else sys.float_info.max
        if not isinstance(v, float) and not abs(f) <= limit:
            raise _mismatch(t, path, "a JSON number outside its range")
        return f
    if isinstance(t, DecimalType) and number:
        return _to_decimal(Decimal(v), t, path)
    raise _mismatch(t, path, _kind(v))


def _to_decimal(d: Decimal, t: DecimalType, path: str) -> Decimal:
    digits = t.precision - t.scale
    too_big = _mismatch(t, path, f"a JSON number with more than {digits} digits before the point")
    if d and d.adjusted() >= digits:
        raise too_big
    # Rounding can carry into a new digit (9.995 -> 10.00), so check the precision afterwards too.
    context = Context(prec=t.precision + 2)
    q = d.quantize(Decimal(1).scaleb(-t.scale), rounding=ROUND_HALF_UP, context=context)
    if q and q.adjusted() >= digits:
        raise too_big
    return q


def _parse_temporal(s: str, t: DataType, path: str) -> dt.date | dt.datetime:
    try:
        if isinstance(t, DateType):
            return dt.date.fromisoformat(s)
        value = dt.datetime.fromisoformat(s)
    except ValueError:
        form = "date (YYYY-MM-DD)" if isinstance(t, DateType) else "timestamp"
        raise _mismatch(t, path, f"a string that is not an ISO {form}") from None
    if isinstance(t, TimestampNTZType) and value.tzinfo is not None:
        raise _mismatch(t, path, "a timestamp with a time zone offset")
    return value


def _dumps(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dumps(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_dumps(x) for x in v) + "]"
    return str(v) if isinstance(v, Decimal) else json.dumps(v)


def to_arrow_array(
    values: Sequence[Any],
    t: DataType,
    *,
    timezone: str | dt.tzinfo | None = None,
    prefers_large_types: bool = False,
) -> pa.Array:
    """The Arrow array an Arrow UDF returning `t` must yield, from Python values (None = NULL).

    Structs and maps are dicts, as `parse_answer` makes them. Naive datetimes in TIMESTAMP
    positions are read in `timezone` (pass spark.sql.session.timeZone, as from_json would use),
    or as UTC when it is None. `prefers_large_types` mirrors spark.sql.execution.arrow.useLargeVarTypes.
    """
    arrow_type = to_arrow_type(t, timestamp_utc=True, prefers_large_types=prefers_large_types)
    rows = list(values)
    if pa.types.is_list(arrow_type) and any(isinstance(v, np.ndarray) for v in rows):
        return _vectors(rows, arrow_type)
    if (built := arrays.texts(rows, arrow_type)) is not None:  # pa.array imports pandas
        return built
    if timezone is not None and _has_timestamp(t):
        zone = _zone(timezone)
        rows = [_localise(v, t, zone) for v in rows]
    return pa.array(rows, type=arrow_type)


def _vectors(rows: list[Any], arrow_type: pa.ListType) -> pa.Array:
    """Embeddings as one list array built from their buffers: no Python float per value
    (pa.array converts a list of numpy arrays ~40x more slowly)."""
    present = [v for v in rows if v is not None]
    lengths = np.fromiter((0 if v is None else len(v) for v in rows), np.int32, len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(v) for v in present]) if present else np.array([])
    items = arrays.primitives(flat, arrow_type.value_type)
    mask = arrays.booleans([v is None for v in rows])
    return pa.ListArray.from_arrays(
        arrays.primitives(offsets, pa.int32()), items, type=arrow_type, mask=mask
    )


def _has_timestamp(t: DataType) -> bool:
    if isinstance(t, ArrayType):
        return _has_timestamp(t.elementType)
    if isinstance(t, MapType):
        return _has_timestamp(t.valueType)
    if isinstance(t, StructType):
        return any(_has_timestamp(f.dataType) for f in t.fields)
    return isinstance(t, TimestampType)


def _zone(timezone: str | dt.tzinfo) -> dt.tzinfo:
    if isinstance(timezone, dt.tzinfo):
        return timezone
    # Spark also accepts fixed offsets such as '+08:00' and 'UTC+8' as the session time zone.
    m = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?", timezone.strip())
    if m:
        offset = dt.timedelta(hours=int(m[2]), minutes=int(m[3] or 0))
        return dt.timezone(-offset if m[1] == "-" else offset)
    return ZoneInfo(timezone)


def _localise(v: Any, t: DataType, zone: dt.tzinfo) -> Any:
    if v is None:
        return None
    if isinstance(t, TimestampType):
        return v.replace(tzinfo=zone) if isinstance(v, dt.datetime) and v.tzinfo is None else v
    if isinstance(t, ArrayType):
        return [_localise(x, t.elementType, zone) for x in v]
    if isinstance(t, MapType):
        return {k: _localise(x, t.valueType, zone) for k, x in v.items()}
    if isinstance(t, StructType):
        return {f.name: _localise(v.get(f.name), f.dataType, zone) for f in t.fields}
    return v
