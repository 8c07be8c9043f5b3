"""Spark types on the driver: returnType DDL, responseFormat schemas, and ai_query's result types.

`parse_ddl` and `response_format_for` use Spark's DDL parser (they need a SparkContext). Errors
are `ValueError`s: `ReturnTypeError` (bad returnType DDL) and `UnsupportedResponseFormat` (bad
responseFormat). The executor side, answers parsed into these types, is `aiquery.spark.answers`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pyspark.errors import AnalysisException
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
INT_RANGES: dict[type[DataType], tuple[int, int]] = {
    ByteType: (-(2**7), 2**7 - 1),
    ShortType: (-(2**15), 2**15 - 1),
    IntegerType: (-(2**31), 2**31 - 1),
    LongType: (-(2**63), 2**63 - 1),
}
INTEGRAL_TYPES = tuple(INT_RANGES)
STRING_TYPES = (StringType, CharType, VarcharType)
TEMPORAL_TYPES = (DateType, TimestampType, TimestampNTZType)
ATOMIC_TYPES = (
    *STRING_TYPES,
    *TEMPORAL_TYPES,
    *INTEGRAL_TYPES,
    BooleanType,
    FloatType,
    DoubleType,
    DecimalType,
)


class ReturnTypeError(ValueError):
    """A DDL type string that does not parse, or names a type ai_query cannot produce."""


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
    if isinstance(t, STRING_TYPES):
        return StringType()
    if isinstance(t, ATOMIC_TYPES):
        return t
    if isinstance(t, ArrayType):
        return ArrayType(_normalise(t.elementType, ddl), True)
    if isinstance(t, MapType):
        if not isinstance(t.keyType, STRING_TYPES):
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
        properties = {f.name: _json_schema(f.dataType, field_path(path, f.name)) for f in t.fields}
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }
    if isinstance(t, ArrayType):
        return {"type": "array", "items": _json_schema(t.elementType, f"{path}[]")}
    if isinstance(t, MapType) and isinstance(t.keyType, STRING_TYPES):
        return {
            "type": "object",
            "additionalProperties": _json_schema(t.valueType, f"{path}.value"),
        }
    if isinstance(t, STRING_TYPES):
        return {"type": "string"}
    if isinstance(t, INTEGRAL_TYPES):
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


def field_path(path: str, name: str) -> str:
    """The path of field `name` inside `path`, for error messages."""
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


def error_struct_type(t: DataType) -> StructType:
    """`STRUCT<result: t, errorMessage: STRING>`, ai_query's result type when failOnError => false."""
    return StructType(
        [StructField("result", t, True), StructField("errorMessage", StringType(), True)]
    )
