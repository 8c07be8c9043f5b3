"""returnType / responseFormat handling: DDL, JSON schemas, parsing answers, and Arrow output."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import jsonschema
import pyarrow as pa
import pytest
from pyspark.sql import SparkSession
from pyspark.sql.functions import ArrowUDFType, arrow_udf, col
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from aiquery.spark.answers import AnswerCastError, parse_answer, to_arrow_array
from aiquery.spark.ddl import (
    ReturnTypeError,
    UnsupportedResponseFormat,
    error_struct_type,
    parse_ddl,
    response_format_for,
    spark_type_sql,
    struct_to_json_schema,
)

pytestmark = pytest.mark.spark

SECRET = "SECRET-7f3a"
NESTED = StructType(
    [
        StructField("name", StringType()),
        StructField("tags", ArrayType(StringType())),
        StructField("counts", MapType(StringType(), IntegerType())),
        StructField("price", DecimalType(10, 2)),
        StructField("seen", TimestampType()),
        StructField(
            "inner",
            StructType([StructField("ok", BooleanType()), StructField("day", DateType())]),
        ),
        StructField("score", FloatType()),
    ]
)
NESTED_ANSWER = """```json
{"name": "widget", "tags": ["a", "b"], "counts": {"x": 1, "y": null}, "price": 12.345,
 "seen": "2024-05-06T07:08:09Z", "inner": {"ok": true, "day": "2024-02-29"}, "score": 0.5,
 "extra": "ignored"}
```"""


# --- parse_ddl / spark_type_sql -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ddl", "expected"),
    [
        ("STRING", StringType()),
        ("array<float>", ArrayType(FloatType())),
        ("DECIMAL(10,2)", DecimalType(10, 2)),
        ("MAP<STRING, INT>", MapType(StringType(), IntegerType())),
        (
            "STRUCT<a: INT, b: STRING>",
            StructType([StructField("a", IntegerType()), StructField("b", StringType())]),
        ),
        (
            "a INT, b STRING",
            StructType([StructField("a", IntegerType()), StructField("b", StringType())]),
        ),
        ("answer BIGINT", StructType([StructField("answer", LongType())])),
    ],
)
def test_parse_ddl_reads_types_and_bare_field_lists(
    spark: SparkSession, ddl: str, expected: DataType
) -> None:
    assert parse_ddl(ddl) == expected


def test_parse_ddl_makes_everything_nullable_and_char_a_string(spark: SparkSession) -> None:
    t = parse_ddl("a INT NOT NULL, b ARRAY<CHAR(3)>, c MAP<VARCHAR(9), INT>")
    assert t == StructType(
        [
            StructField("a", IntegerType(), True),
            StructField("b", ArrayType(StringType(), True)),
            StructField("c", MapType(StringType(), IntegerType(), True)),
        ]
    )


def test_bad_ddl_error_names_it_and_lists_valid_examples(spark: SparkSession) -> None:
    with pytest.raises(ReturnTypeError) as info:
        parse_ddl("STRUCT<a INT")
    message = str(info.value)
    assert "'STRUCT<a INT'" in message
    assert "PARSE_SYNTAX_ERROR" in message
    assert "ARRAY<FLOAT>" in message and "a INT, b STRING" in message


@pytest.mark.parametrize(
    "ddl", ["BINARY", "a STRUCT<b: BINARY>", "MAP<INT, STRING>", "INTERVAL DAY"]
)
def test_types_no_answer_can_be_parsed_into_are_rejected(spark: SparkSession, ddl: str) -> None:
    with pytest.raises(ReturnTypeError, match="Invalid type"):
        parse_ddl(ddl)


def test_spark_type_sql_is_readable_ddl_that_parses_back(spark: SparkSession) -> None:
    t = StructType(
        [
            StructField("a", IntegerType()),
            StructField("odd name", ArrayType(MapType(StringType(), LongType()))),
            StructField("d", DecimalType(10, 2)),
        ]
    )
    sql = spark_type_sql(t)
    assert sql == "STRUCT<a: INT, `odd name`: ARRAY<MAP<STRING, BIGINT>>, d: DECIMAL(10,2)>"
    assert parse_ddl(sql) == t


# --- struct_to_json_schema / response_format_for ------------------------------------------------


def test_struct_to_json_schema_nested() -> None:
    schema = struct_to_json_schema(NESTED)
    assert schema["type"] == "object"
    assert schema["required"] == NESTED.names
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["name"] == {"type": "string"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["counts"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["price"] == {"type": "number"}
    assert props["seen"] == {"type": "string", "format": "date-time"}
    assert props["score"] == {"type": "number"}
    assert props["inner"] == {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "day": {"type": "string", "format": "date"}},
        "required": ["ok", "day"],
        "additionalProperties": False,
    }
    good = {
        "name": "w",
        "tags": ["a"],
        "counts": {"x": 1},
        "price": 1.5,
        "seen": "2024-05-06T07:08:09Z",
        "inner": {"ok": True, "day": "2024-02-29"},
        "score": 0.5,
    }
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "inner": {"ok": True}}, schema)


def test_json_schema_rejects_types_without_json_equivalent_naming_the_field() -> None:
    t = StructType([StructField("outer", StructType([StructField("blob", BinaryType())]))])
    with pytest.raises(ReturnTypeError, match=r"`outer\.blob`.*BINARY"):
        struct_to_json_schema(t)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", {"type": "text"}),
        (" JSON_OBJECT ", {"type": "json_object"}),
        ('{"type": "json_object"}', {"type": "json_object"}),
        (
            '{"type":"json_schema","json_schema":{"schema":{"type":"object"},"strict":true}}',
            {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": True},
            },
        ),
        (
            '{"type":"json_schema","json_schema":{"name":"mine","schema":{}}}',
            {"type": "json_schema", "json_schema": {"name": "mine", "schema": {}}},
        ),
    ],
)
def test_response_format_text_and_json_forms(value: str, expected: dict[str, Any]) -> None:
    assert response_format_for(value) == expected


def test_response_format_from_ddl_struct(spark: SparkSession) -> None:
    body = response_format_for("struct<answer: STRING, score: DOUBLE>")
    assert body == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}, "score": {"type": "number"}},
                "required": ["answer", "score"],
                "additionalProperties": False,
            },
        },
    }


@pytest.mark.parametrize(
    "value",
    [
        "xml",
        "{not json",
        '["json_object"]',
        '{"type": "yaml"}',
        '{"type": "json_schema"}',
        '{"type": "json_schema", "json_schema": {"schema": "object"}}',
        "STRUCT<a INT",
        "STRUCT<a: BINARY>",
    ],
)
def test_response_format_rejections_name_the_error_class(spark: SparkSession, value: str) -> None:
    with pytest.raises(UnsupportedResponseFormat) as info:
        response_format_for(value)
    message = str(info.value)
    assert message.startswith("[AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT]")
    assert "json_object" in message and "STRUCT<" in message


# --- parse_answer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "t", "expected"),
    [
        ("  as is\n```json\n{}\n```", StringType(), "  as is\n```json\n{}\n```"),
        (" 42\n", IntegerType(), 42),
        ("```json\n42\n```", IntegerType(), 42),
        ("4.0", IntegerType(), 4),
        ("null", IntegerType(), None),
        ("-128", ByteType(), -128),
        ("9223372036854775807", LongType(), 2**63 - 1),
        ("4.5", DoubleType(), 4.5),
        ("3", FloatType(), 3.0),
        ("true", BooleanType(), True),
        ("123.456", DecimalType(5, 2), Decimal("123.46")),
        ("0.125", DecimalType(5, 2), Decimal("0.13")),
        (
            "1234567890123456789012345678.0123456789",
            DecimalType(38, 10),
            Decimal("1234567890123456789012345678.0123456789"),
        ),
        ("2024-02-29", DateType(), dt.date(2024, 2, 29)),
        ('"2024-02-29"', DateType(), dt.date(2024, 2, 29)),
        ("2024-01-02 03:04:05", TimestampNTZType(), dt.datetime(2024, 1, 2, 3, 4, 5)),
        (
            '"2024-01-02T03:04:05Z"',
            TimestampType(),
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        ),
        ("```json\n[1, 2.5, null]\n```", ArrayType(FloatType()), [1.0, 2.5, None]),
        ('{"a": 1, "b": null}', MapType(StringType(), IntegerType()), {"a": 1, "b": None}),
        ("null", ArrayType(StringType()), None),
    ],
)
def test_parse_answer_scalars_and_collections(text: str, t: DataType, expected: Any) -> None:
    assert parse_answer(text, t) == expected


def test_parse_answer_struct_like_from_json() -> None:
    value = parse_answer(NESTED_ANSWER, NESTED)
    assert value == {
        "name": "widget",
        "tags": ["a", "b"],
        "counts": {"x": 1, "y": None},
        "price": Decimal("12.35"),
        "seen": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
        "inner": {"ok": True, "day": dt.date(2024, 2, 29)},
        "score": 0.5,
    }
    partial = parse_answer('{"inner": null, "tags": [], "surplus": [1, 2]}', NESTED)
    assert partial == {f: None for f in NESTED.names} | {"tags": []}


def test_string_fields_keep_non_string_json_as_json_text() -> None:
    t = StructType([StructField("s", StringType()), StructField("n", StringType())])
    assert parse_answer('{"s": {"x": 1.50, "y": [true]}, "n": 7}', t) == {
        "s": '{"x":1.50,"y":[true]}',
        "n": "7",
    }


@pytest.mark.parametrize(
    ("text", "t", "fragment"),
    [
        ("2147483648", IntegerType(), "outside [-2147483648, 2147483647]"),
        ("128", ByteType(), "outside [-128, 127]"),
        ("4.5", IntegerType(), "expected INT, got a fractional JSON number"),
        ('"42"', IntegerType(), "expected INT, got a JSON string"),
        ("true", LongType(), "expected BIGINT, got a JSON boolean"),
        ("1", BooleanType(), "expected BOOLEAN, got an integral JSON number"),
        ("True", BooleanType(), "answer is not valid JSON for BOOLEAN"),
        ("1e39", FloatType(), "expected FLOAT, got a JSON number outside its range"),
        ("1e400", DoubleType(), "expected DOUBLE, got a JSON number outside its range"),
        ("9" * 400, DoubleType(), "expected DOUBLE, got a JSON number outside its range"),
        ("1234.5", DecimalType(5, 2), "more than 3 digits before the point"),
        ("999.995", DecimalType(5, 2), "more than 3 digits before the point"),
        ("2024-13-01", DateType(), "not an ISO date"),
        ('"2024-01-02T03:04:05+02:00"', TimestampNTZType(), "time zone offset"),
        ('{"a": 1}', ArrayType(IntegerType()), "expected ARRAY<INT>, got a JSON object"),
        ('[1, "x"]', ArrayType(IntegerType()), "expected INT at `[1]`, got a JSON string"),
        ('{"a": "x"}', StructType([StructField("a", IntegerType())]), "at `a`"),
        (
            '{"items": [{"qty": 1}, {"qty": 1.5}]}',
            StructType(
                [
                    StructField(
                        "items",
                        ArrayType(StructType([StructField("qty", IntegerType())])),
                    )
                ]
            ),
            "expected INT at `items[1].qty`, got a fractional JSON number",
        ),
        (
            '{"a": 1',
            StructType([StructField("a", IntegerType())]),
            "answer is not valid JSON for STRUCT<a: INT>",
        ),
    ],
)
def test_parse_answer_failures_say_what_was_expected(text: str, t: DataType, fragment: str) -> None:
    with pytest.raises(AnswerCastError) as info:
        parse_answer(text, t)
    assert fragment in str(info.value)
    assert info.value.return_type == spark_type_sql(t)


@pytest.mark.parametrize(
    ("text", "t"),
    [
        (f'"{SECRET}"', IntegerType()),
        (f"{SECRET} is my answer", IntegerType()),
        (f'{{"a": "{SECRET}"}}', StructType([StructField("a", DoubleType())])),
        (f'{{"a": 1, "{SECRET}": oops}}', StructType([StructField("a", DoubleType())])),
        (f'["{SECRET}"]', ArrayType(BooleanType())),
        (f'{{"{SECRET}": "x"}}', MapType(StringType(), IntegerType())),
        (SECRET, DateType()),
        (f'"2024-01-01 {SECRET}"', TimestampType()),
        (f'"{SECRET}"', DecimalType(5, 2)),
    ],
)
def test_parse_errors_never_quote_the_answer(text: str, t: DataType) -> None:
    with pytest.raises(AnswerCastError) as info:
        parse_answer(text, t)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.args)
    # A traceback must not show the JSONDecodeError either: it carries the whole answer.
    assert info.value.__suppress_context__


# --- to_arrow_array / error_struct_type ---------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "values"),
    [
        (StringType(), ["a", None]),
        (ByteType(), [1, None]),
        (IntegerType(), [2**31 - 1, None]),
        (LongType(), [2**63 - 1, None]),
        (FloatType(), [0.5, None]),
        (DoubleType(), [0.1, None]),
        (BooleanType(), [True, None]),
        (DecimalType(10, 2), [Decimal("12.35"), None]),
        (DateType(), [dt.date(2024, 2, 29), None]),
        (ArrayType(FloatType()), [[1.0, None], [], None]),
        (ArrayType(StringType()), [["x"], None]),
        (MapType(StringType(), IntegerType()), [{"a": 1, "b": None}, None]),
        (StructType([StructField("a", IntegerType())]), [{"a": 1}, {"a": None}, None]),
    ],
)
def test_to_arrow_array_has_sparks_arrow_type(t: DataType, values: list[Any]) -> None:
    array = to_arrow_array(values, t)
    assert array.type == to_arrow_type(t)
    got = array.to_pylist()
    if isinstance(t, MapType):
        got = [None if v is None else dict(v) for v in got]
    assert got == values


def test_to_arrow_array_nested_struct_and_error_struct() -> None:
    value = parse_answer(NESTED_ANSWER, NESTED)
    array = to_arrow_array([value, None], NESTED)
    assert array.type == to_arrow_type(NESTED)
    assert array.to_pylist()[0]["price"] == Decimal("12.35")

    t = error_struct_type(ArrayType(FloatType()))
    assert t.names == ["result", "errorMessage"]
    assert t["result"].dataType == ArrayType(FloatType())
    rows = [{"result": [0.5, 1.0], "errorMessage": None}, {"result": None, "errorMessage": "boom"}]
    array = to_arrow_array(rows, t)
    assert array.type == to_arrow_type(t)
    assert array.to_pylist() == rows


def test_naive_timestamps_are_read_in_the_given_time_zone() -> None:
    t = StructType([StructField("at", ArrayType(TimestampType()))])
    naive = dt.datetime(2024, 1, 2, 3, 4, 5)
    aware = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    for zone, hours in [(None, 0), ("America/New_York", 5), ("+08:00", -8), ("UTC-2", 2)]:
        array = to_arrow_array([{"at": [naive, aware]}], t, timezone=zone)
        assert array.to_pylist() == [{"at": [aware + dt.timedelta(hours=hours), aware]}]


def test_large_var_types_on_request() -> None:
    array = to_arrow_array(["a"], StringType(), prefers_large_types=True)
    assert array.type == pa.large_string()


# --- end to end in Spark ------------------------------------------------------------------------


def test_arrow_iter_udf_returns_a_nested_struct(spark: SparkSession) -> None:
    t = parse_ddl(spark_type_sql(NESTED))

    def answer(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        for batch in batches:
            parsed = [None if s is None else parse_answer(s, t) for s in batch.to_pylist()]
            yield to_arrow_array(parsed, t, timezone="UTC")

    udf = arrow_udf(answer, t)
    assert udf.evalType == ArrowUDFType.SCALAR_ITER
    df = spark.createDataFrame(
        [(1, NESTED_ANSWER), (2, '{"name": "bare"}'), (3, None)], "id INT, a STRING"
    )
    out = df.select("id", udf(col("a")).alias("r")).orderBy("id")
    rows = out.select("id", "r", col("r.seen").cast("long").alias("epoch")).collect()

    first = rows[0].r.asDict(recursive=True)
    assert first["name"] == "widget" and first["tags"] == ["a", "b"]
    assert first["counts"] == {"x": 1, "y": None}
    assert first["price"] == Decimal("12.35") and first["score"] == 0.5
    assert first["inner"] == {"ok": True, "day": dt.date(2024, 2, 29)}
    assert rows[0].epoch == int(dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC).timestamp())
    assert rows[1].r.name == "bare" and rows[1].r.tags is None
    assert rows[2].r is None


def test_arrow_iter_udf_returns_the_error_struct_and_registers_for_sql(spark: SparkSession) -> None:
    element = ArrayType(FloatType())
    t = error_struct_type(element)

    def embed(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        for batch in batches:
            out: list[dict[str, Any] | None] = []
            for s in batch.to_pylist():
                try:
                    out.append({"result": parse_answer(s, element), "errorMessage": None})
                except AnswerCastError as e:
                    out.append({"result": None, "errorMessage": str(e)})
            yield to_arrow_array(out, t)

    udf = arrow_udf(embed, t)
    spark.udf.register("aiquery_test_embed", udf)
    rows = spark.sql(
        "SELECT id, aiquery_test_embed(a) AS r FROM VALUES "
        "(1, '[0.5, 1.5]'), (2, 'not json'), (3, '[1, \"x\"]') AS v(id, a) ORDER BY id"
    ).collect()
    assert rows[0].r.result == [0.5, 1.5] and rows[0].r.errorMessage is None
    assert rows[1].r.result is None
    assert rows[1].r.errorMessage.startswith("answer is not valid JSON for ARRAY<FLOAT>")
    assert "not json" not in rows[1].r.errorMessage
    assert "expected FLOAT at `[1]`, got a JSON string" in rows[2].r.errorMessage
    schema = spark.sql("SELECT aiquery_test_embed('[1]') AS r").schema
    assert schema["r"].dataType == t
