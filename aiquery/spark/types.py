"""Spark types for ai_query: returnType DDL, responseFormat schemas, and answers as Arrow arrays.

`parse_ddl` and `response_format_for` run on the driver (Spark's DDL parser needs a SparkContext);
`parse_answer` and `to_arrow_array` run on executors inside the Arrow UDF and need no Spark.

Errors, all `ValueError`s: `ReturnTypeError` (bad returnType DDL), `UnsupportedResponseFormat`
(bad responseFormat) and `ParseCastError` (an answer that does not fit returnType). None of them
quotes the model's answer, which may carry user data.
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

import pyarrow as pa
from pyspark.errors import AnalysisException
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    ByteType,
    CharType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
    VarcharType,
    _parse_datatype_string,
)

_VALID_DDL = (
    "'STRING', 'INT', 'BIGINT', 'DOUBLE', 'BOOLEAN', 'DECIMAL(10,2)', 'DATE', 'TIMESTAMP', "
    "'ARRAY<FLOAT>', 'MAP<STRING, INT>', 'STRUCT<a: INT, b: STRING>' or a field list 'a INT, b STRING'."
)
_INT_RANGES: dict[type[DataType], tuple[int, int]] = {
    ByteType: (-(2**7), 2**7 - 1),
    ShortType: (-(2**15), 2**15 - 1),
    IntegerType: (-(2**31), 2**31 - 1),
    LongType: (-(2**63), 2**63 - 1),
}
_INTEGRAL = tuple(_INT_RANGES)
_STRINGS = (StringType, CharType, VarcharType)
_TEMPORAL = (DateType, TimestampType, TimestampNTZType)
_ATOMIC = (
    *_STRINGS,
    *_TEMPORAL,
    *_INTEGRAL,
    BooleanType,
    FloatType,
    DoubleType,
    DecimalType,
)
_FLOAT32_MAX = 3.4028234663852886e38
_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


class ReturnTypeError(ValueError):
    """A DDL type string that does not parse, or names a type ai_query cannot produce."""


class ParseCastError(ValueError):
    """The model's answer cannot be parsed into the returnType.

    The message says what was expected and what kind of JSON was found (e.g. "expected INT,
    got a JSON string"), never the answer itself; callers add the error class and endpoint.
    """

    def __init__(self, return_type: str, detail: str) -> None:
        self.return_type = return_type
        super().__init__(detail)


class UnsupportedResponseFormat(ValueError):  # noqa: N818 (public name fixed by the API)
    """A responseFormat ai_query does not accept (AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT)."""

    error_class = "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"[{self.error_class}] {detail.rstrip('.')}. Accepted responseFormat values: 'text', 'json_object', "
            """a JSON object such as '{"type":"json_object"}' or """
            """'{"type":"json_schema","json_schema":{"name":"...","schema":{...},"strict":true}}', """
            "or a DDL struct such as 'STRUCT<answer: STRING, score: DOUBLE>'."
        )


class _MismatchError(Exception):
    """Raised inside the converters; `parse_answer` turns it into a ParseCastError."""


def parse_ddl(ddl: str) -> DataType:
    """Parse a Spark DDL type string such as 'ARRAY<FLOAT>' or 'a INT, b STRING' (a STRUCT).

    Uses Spark's own parser, so it needs an active SparkContext. Like `from_json`, the result is
    nullable throughout, CHAR/VARCHAR become STRING and map keys must be STRING. Raises
    ReturnTypeError for DDL that does not parse or that names a type no answer can be parsed
    into (BINARY, INTERVAL, VARIANT, ...).
    """
    try:
        parsed = _parse_datatype_string(ddl)
    except AnalysisException as e:
        # Callers add their own error class and SQLSTATE; keep Spark's reason and position.
        reason = re.sub(r"\s*SQLSTATE: \w+", "", str(e).strip().splitlines()[0])
        raise ReturnTypeError(
            f"Invalid type {ddl!r}: {reason}. Valid examples: {_VALID_DDL}"
        ) from None
    return _normalise(parsed, ddl)


def _normalise(t: DataType, ddl: str) -> DataType:
    if isinstance(t, _STRINGS):
        return StringType()
    if isinstance(t, _ATOMIC):
        return t
    if isinstance(t, ArrayType):
        return ArrayType(_normalise(t.elementType, ddl), True)
    if isinstance(t, MapType):
        if not isinstance(t.keyType, _STRINGS):
            raise ReturnTypeError(
                f"Invalid type {ddl!r}: a MAP's key type must be STRING, as in JSON."
            )
        return MapType(StringType(), _normalise(t.valueType, ddl), True)
    if isinstance(t, StructType):
        if len(set(t.names)) != len(t.names):
            raise ReturnTypeError(f"Invalid type {ddl!r}: duplicate field names in a STRUCT.")
        return StructType([StructField(f.name, _normalise(f.dataType, ddl)) for f in t.fields])
    raise ReturnTypeError(
        f"Invalid type {ddl!r}: an answer cannot be parsed into {spark_type_sql(t)}. "
        f"Valid examples: {_VALID_DDL}"
    )


def spark_type_sql(t: DataType) -> str:
    """Upper-case DDL for messages, e.g. 'STRUCT<a: INT, b: ARRAY<STRING>>'; parse_ddl reads it back."""
    if isinstance(t, ArrayType):
        return f"ARRAY<{spark_type_sql(t.elementType)}>"
    if isinstance(t, MapType):
        return f"MAP<{spark_type_sql(t.keyType)}, {spark_type_sql(t.valueType)}>"
    if isinstance(t, StructType):
        fields = ", ".join(f"{_quote(f.name)}: {spark_type_sql(f.dataType)}" for f in t.fields)
        return f"STRUCT<{fields}>"
    return str(t.simpleString()).upper()


def _quote(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return name
    return "`" + name.replace("`", "``") + "`"


def struct_to_json_schema(t: StructType) -> dict[str, Any]:
    """The JSON schema of a STRUCT, for an OpenAI `response_format` of type json_schema.

    Every field is required and no other properties are allowed, as OpenAI's strict mode needs.
    Raises ReturnTypeError naming the field whose type has no JSON equivalent (BINARY, ...).
    """
    return _json_schema(t, "")


def _json_schema(t: DataType, path: str) -> dict[str, Any]:
    if isinstance(t, StructType):
        properties = {f.name: _json_schema(f.dataType, _field(path, f.name)) for f in t.fields}
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }
    if isinstance(t, ArrayType):
        return {"type": "array", "items": _json_schema(t.elementType, f"{path}[]")}
    if isinstance(t, MapType) and isinstance(t.keyType, _STRINGS):
        return {
            "type": "object",
            "additionalProperties": _json_schema(t.valueType, f"{path}.value"),
        }
    if isinstance(t, _STRINGS):
        return {"type": "string"}
    if isinstance(t, _INTEGRAL):
        return {"type": "integer"}
    if isinstance(t, FloatType | DoubleType | DecimalType):
        return {"type": "number"}
    if isinstance(t, BooleanType):
        return {"type": "boolean"}
    if isinstance(t, DateType):
        return {"type": "string", "format": "date"}
    if isinstance(t, TimestampType | TimestampNTZType):
        return {"type": "string", "format": "date-time"}
    raise ReturnTypeError(
        f"Field `{path}` has type {spark_type_sql(t)}, which has no JSON schema equivalent; use "
        "STRING, numeric, BOOLEAN, DATE, TIMESTAMP, ARRAY, MAP<STRING, ...> or STRUCT fields"
    )


def _field(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def response_format_for(value: str) -> dict[str, Any]:
    """The `response_format` request body for ai_query's responseFormat argument.

    Accepts 'text', 'json_object', a JSON object of type text/json_object/json_schema (a
    json_schema without a name gets "response"), or a DDL 'STRUCT<...>' (converted to a strict
    json_schema named "response"). Raises UnsupportedResponseFormat for anything else.
    """
    stripped = value.strip()
    if stripped.lower() in ("text", "json_object"):
        return {"type": stripped.lower()}
    if stripped.startswith("{"):
        return _response_format_json(stripped)
    if not re.match(r"struct\s*<", stripped, re.IGNORECASE):
        shown = stripped if len(stripped) <= 80 else stripped[:77] + "..."
        raise UnsupportedResponseFormat(f"Unrecognised responseFormat {shown!r}")
    try:
        t = parse_ddl(stripped)
        if not isinstance(t, StructType):
            raise ReturnTypeError(f"{stripped!r} is not a STRUCT")
        schema = struct_to_json_schema(t)
    except ReturnTypeError as e:
        raise UnsupportedResponseFormat(f"Invalid DDL struct: {e}") from None
    return {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }


def _response_format_json(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError as e:
        raise UnsupportedResponseFormat(f"responseFormat is not valid JSON ({e})") from None
    if not isinstance(body, dict) or body.get("type") not in ("text", "json_object", "json_schema"):
        raise UnsupportedResponseFormat(
            'responseFormat JSON must be an object whose "type" is text, json_object or json_schema'
        )
    if body["type"] != "json_schema":
        return body
    spec = body.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise UnsupportedResponseFormat(
            'a json_schema responseFormat needs a "json_schema" object with a "schema" object'
        )
    return {**body, "json_schema": {"name": "response", **spec}}


def parse_answer(text: str, t: DataType) -> Any:
    """The model's answer as a Python value of Spark type `t`, like `from_json`.

    STRING is the text itself. Other types are JSON-decoded, after dropping surrounding
    whitespace and a ```json fence; DATE/TIMESTAMP also take bare ISO text. Numbers must fit the
    type (DECIMAL is rounded half-up to its scale); struct fields match by exact name, missing
    ones are NULL and extra keys are ignored; JSON null is NULL. Structs become dicts.
    Raises ParseCastError.
    """
    if isinstance(t, _STRINGS):
        return text
    try:
        body = text.strip()
        if match := _FENCE.fullmatch(body):
            body = match.group(1).strip()
        if isinstance(t, _TEMPORAL) and not body.startswith('"'):
            return None if body == "null" else _convert(body, t, "")
        return _convert(_loads(body, t), t, "")
    except _MismatchError as e:
        raise ParseCastError(spark_type_sql(t), str(e)) from None


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
    if isinstance(t, _STRINGS):
        # Like from_json, a non-string JSON value in a STRING field is kept as its JSON text.
        return v if isinstance(v, str) else _dumps(v)
    container = {StructType: dict, ArrayType: list, MapType: dict}.get(type(t))
    if container is not None and not isinstance(v, container):
        raise _mismatch(t, path, _kind(v))
    if isinstance(t, StructType):
        return {f.name: _convert(v.get(f.name), f.dataType, _field(path, f.name)) for f in t.fields}
    if isinstance(t, ArrayType):
        return [_convert(x, t.elementType, f"{path}[{i}]") for i, x in enumerate(v)]
    if isinstance(t, MapType):
        return {k: _convert(x, t.valueType, f"{path}.value") for k, x in v.items()}
    return _convert_atomic(v, t, path)


def _convert_atomic(v: Any, t: DataType, path: str) -> Any:
    if isinstance(t, BooleanType) and isinstance(v, bool):
        return v
    if isinstance(t, _TEMPORAL) and isinstance(v, str):
        return _parse_temporal(v.strip(), t, path)
    number = isinstance(v, int | Decimal) and not isinstance(v, bool)
    if isinstance(t, _INTEGRAL) and number and (isinstance(v, int) or v == v.to_integral_value()):
        lo, hi = _INT_RANGES[type(t)]
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
    if timezone is not None and _has_timestamp(t):
        zone = _zone(timezone)
        rows = [_localise(v, t, zone) for v in rows]
    return pa.array(rows, type=arrow_type)


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


def error_struct_type(t: DataType) -> StructType:
    """`STRUCT<result: t, errorMessage: STRING>`, ai_query's result type when failOnError => false."""
    return StructType(
        [StructField("result", t, True), StructField("errorMessage", StringType(), True)]
    )
