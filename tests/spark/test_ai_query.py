"""ai_query on real local Spark against the real emulator: syntax, types, semantics, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    FloatType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

import aiquery
from aiquery.endpoints.registry import configure
from aiquery.errors import InvalidArgumentError
from aiquery.functions import ai_query
from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.embedding import embed
from aiquery.serving.models import chat_reply
from aiquery.serving.server import EmulatorServer

pytestmark = pytest.mark.spark

TEXTS = [
    "Spark runs batch jobs on clusters. It scales out.",
    "Delta Lake adds transactions to tables. Readers see snapshots.",
    "The emulator answers deterministically. Tests rely on it.",
]


def answer(prompt: str) -> str:
    return chat_reply([Message("user", prompt)]).text


@pytest.fixture
def texts(spark):  # type: ignore[no-untyped-def]
    rows = [(i, t) for i, t in enumerate(TEXTS)] + [(len(TEXTS), None)]
    df = spark.createDataFrame(rows, "id INT, text STRING")
    df.createOrReplaceTempView("texts")
    return df


def test_chat_via_sql_returns_the_answer_and_null_for_null(
    spark, workspace, texts, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    df = aiquery.sql(
        spark,
        "SELECT id, ai_query('databricks-gpt-5-4', 'Summarize: ' || text) AS summary FROM texts",
    )
    expected = spark.createDataFrame(
        [(i, answer("Summarize: " + t)) for i, t in enumerate(TEXTS)] + [(3, None)],
        "id INT, summary STRING",
    )
    collected = spark.createDataFrame(df.collect(), df.schema)  # one action: one request per row
    assert_df_equality(collected, expected, ignore_row_order=True, ignore_nullable=True)
    assert control.stats()["databricks-gpt-5-4"]["requests"] == len(TEXTS)  # NULL sent nothing


def test_gateway_names_and_case_insensitive_function(spark, workspace, texts) -> None:  # type: ignore[no-untyped-def]
    # Both gateway spellings: `system.ai.<model>` and the "Query model services" page's
    # `system.ai.databricks-<model>`.
    rows = aiquery.sql(
        spark,
        "SELECT AI_QUERY('system.ai.gpt-5-mini', text) AS a, "
        "ai_query('system.ai.databricks-gpt-5-mini', text) AS b FROM texts WHERE id = 0",
    ).collect()
    assert rows[0].a == rows[0].b == answer(TEXTS[0])


def test_embeddings_return_array_float_in_few_requests(
    spark, workspace, texts, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    df = aiquery.sql(
        spark,
        "SELECT id, ai_query('databricks-gte-large-en', text) AS v, "
        "ai_query('databricks-gte-large-en', text, failOnError => false) AS w FROM texts",
    )
    assert df.schema["v"].dataType == ArrayType(FloatType())
    assert (
        df.schema["w"].dataType.simpleString() == "struct<result:array<float>,errorMessage:string>"
    )
    rows = {r.id: r for r in df.collect()}
    for i in range(3):  # the model's float32 values, bit for bit, from base64 on the wire
        vector = np.asarray(embed(TEXTS[i], 1024), dtype=np.float32).tolist()
        assert rows[i].v == rows[i].w.result == vector
    assert rows[3].v is None and rows[3].w.result is None
    stats = control.stats()["databricks-gte-large-en"]
    assert stats["items"] == 6 and stats["requests"] < 6


def test_a_batch_of_vectors_goes_back_in_slices_in_row_order(spark, workspace) -> None:  # type: ignore[no-untyped-def]
    # One partition of 2,100 rows: one Arrow batch, answered and handed back in slices of
    # 1,024 rows.
    df = aiquery.sql(
        spark,
        "SELECT id, ai_query('databricks-gte-large-en', concat('row text ', CAST(id AS STRING))) "
        "AS v FROM range(0, 2100, 1, 1)",
    )
    rows = df.collect()
    assert [r.id for r in rows] == list(range(2100))
    for r in rows[::97] + rows[1020:1030] + rows[-3:]:
        assert r.v == np.asarray(embed(f"row text {r.id}", 1024), dtype=np.float32).tolist()


def test_return_type_and_response_format_give_a_typed_struct(spark, workspace, texts) -> None:  # type: ignore[no-untyped-def]
    df = aiquery.sql(
        spark,
        """SELECT id, ai_query(
               'databricks-gpt-5-4', text,
               returnType => 'STRUCT<topic: STRING, sentences: INT>',
               responseFormat => 'STRUCT<topic: STRING, sentences: INT>',
               modelParameters => named_struct('max_tokens', 200, 'temperature', 0.0)
           ) AS info FROM texts WHERE id < 3""",
    )
    expected_type = StructType(
        [StructField("topic", StringType()), StructField("sentences", IntegerType())]
    )
    assert df.schema["info"].dataType == expected_type
    rows = df.collect()
    assert all(isinstance(r.info.topic, str) and isinstance(r.info.sentences, int) for r in rows)


def test_response_format_keeps_a_json_string_for_from_json(spark, workspace, texts) -> None:  # type: ignore[no-untyped-def]
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["spark", "delta", "other"]}},
        "required": ["label"],
    }
    fmt = json.dumps(
        {"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": True}}
    )
    df = aiquery.sql(
        spark,
        f"SELECT id, from_json(ai_query('databricks-gpt-5-4', text, responseFormat => '{fmt}'), 'label STRING').label AS label FROM texts WHERE id < 2",
    )
    labels = {r.id: r.label for r in df.collect()}
    assert labels == {0: "spark", 1: "delta"}


def test_fail_on_error_false_puts_errors_in_rows(
    spark, workspace, texts, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    control.set_faults("databricks-gpt-5", error_rate_500=1.0)
    spark.conf.set("aiquery.retryMaxAttempts", "2")
    df = aiquery.sql(
        spark, "SELECT id, ai_query('databricks-gpt-5', text, failOnError => false) AS r FROM texts"
    )
    assert df.schema["r"].dataType == StructType(
        [StructField("result", StringType()), StructField("errorMessage", StringType())]
    )
    rows = {row.id: row.r for row in df.collect()}
    for i in range(3):
        assert rows[i].result is None
        assert "AI_FUNCTION_HTTP_REQUEST_ERROR" in rows[i].errorMessage
        assert "HTTP 500" in rows[i].errorMessage and "databricks-gpt-5" in rows[i].errorMessage
    assert rows[3].result is None and rows[3].errorMessage is None
    assert control.stats()["databricks-gpt-5"]["requests"] == 3 * 2  # each row: 2 attempts


def test_fail_on_error_false_success_has_null_error(spark, workspace, texts) -> None:  # type: ignore[no-untyped-def]
    rows = aiquery.sql(
        spark,
        "SELECT ai_query('databricks-gpt-5-4', text, failOnError => false) AS r FROM texts WHERE id = 1",
    ).collect()
    assert rows[0].r.result == answer(TEXTS[1]) and rows[0].r.errorMessage is None


def test_parse_failure_is_a_parse_cast_error_row(spark, workspace, texts) -> None:  # type: ignore[no-untyped-def]
    rows = aiquery.sql(
        spark,
        "SELECT ai_query('databricks-gpt-5-4', text, returnType => 'INT', failOnError => false) AS r FROM texts WHERE id = 0",
    ).collect()
    assert rows[0].r.result is None
    assert "AI_FUNCTION_HTTP_PARSE_CAST_ERROR" in rows[0].r.errorMessage


def test_bad_token_fails_the_query_without_leaking_it(  # type: ignore[no-untyped-def]
    spark, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, control: EmulatorControl
) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", emulator.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-not-the-token-42")
    spark.range(3000).selectExpr("CAST(id AS STRING) AS text").createOrReplaceTempView("many")
    with pytest.raises(Exception) as caught:
        aiquery.sql(spark, "SELECT ai_query('databricks-gpt-5-4', text) FROM many").collect()
    message = str(caught.value)
    assert "AI_FUNCTION_HTTP_REQUEST_ERROR" in message and "HTTP 401" in message
    assert "dapi-not-the-token-42" not in message
    sent = control.stats()["databricks-gpt-5-4"]["requests"]
    assert sent <= 2 * (64 + 5)  # two tasks, each at most its window plus the breaker's threshold


def test_custom_model_positional_form(spark, workspace, control: EmulatorControl) -> None:  # type: ignore[no-untyped-def]
    control.put_endpoint("price-model", task="custom")
    configure(
        {
            "price-model": {
                "protocol": "databricks",
                "base_url": workspace.url,
                "task": "custom",
                "token": workspace.token,
            }
        }
    )
    spark.createDataFrame([(1.5, 2), (3.0, 4)], "a DOUBLE, b INT").createOrReplaceTempView(
        "features"
    )
    df = aiquery.sql(
        spark,
        "SELECT a, ai_query('price-model', named_struct('a', a, 'b', b), 'DOUBLE', true) AS p FROM features",
    )
    assert df.schema["p"].dataType == DoubleType()
    assert sorted((r.a, r.p) for r in df.collect()) == [(1.5, 3.5), (3.0, 7.0)]


def test_completions_endpoint(spark, workspace, texts, control: EmulatorControl) -> None:  # type: ignore[no-untyped-def]
    control.put_endpoint("my-completions", task="llm/v1/completions")
    configure(
        {
            "my-completions": {
                "protocol": "databricks",
                "base_url": workspace.url,
                "task": "completions",
                "token": workspace.token,
            }
        }
    )
    rows = aiquery.sql(
        spark, "SELECT ai_query('my-completions', 'one two three') AS c FROM texts WHERE id = 0"
    ).collect()
    assert isinstance(rows[0].c, str) and "three" in rows[0].c


def test_databricks_pyspark_keyword_return_type(spark, workspace, texts, control) -> None:  # type: ignore[no-untyped-def]
    df = texts.select(
        ai_query("databricks-gpt-5-4", "text", return_type="ARRAY<STRING>").alias("a")
    )
    assert df.schema["a"].dataType.simpleString() == "array<string>"
    with pytest.raises(InvalidArgumentError, match="pass one"):
        ai_query("databricks-gpt-5-4", "text", returnType="STRING", return_type="INT")
    assert control.requests() == []


def test_dataframe_api_types_and_arguments(spark, workspace, texts) -> None:  # type: ignore[no-untyped-def]
    df = texts.where("id < 3").select(
        "id",
        ai_query("databricks-gpt-5-4", F.concat(F.lit("Summarize: "), "text")).alias("s"),
        ai_query(
            "databricks-gpt-5-4", "text", failOnError=False, modelParameters={"max_tokens": 2}
        ).alias("short"),
        ai_query("databricks-bge-large-en", "text").alias("v"),
        ai_query(
            "databricks-gpt-5-4",
            "text",
            returnType="ARRAY<STRING>",
            responseFormat="STRUCT<items: ARRAY<STRING>>",
        ).alias("bad"),
    )
    assert [f.dataType.simpleString() for f in df.schema.fields] == [
        "int",
        "string",
        "struct<result:string,errorMessage:string>",
        "array<float>",
        "array<string>",
    ]
    rows = {r.id: r for r in df.drop("bad").collect()}
    assert rows[0].s == answer("Summarize: " + TEXTS[0])
    assert len(rows[0].short.result) <= 8  # max_tokens 2 ≈ 8 characters
    assert len(rows[0].v) == 1024


def test_register_makes_plain_spark_sql_work(spark, workspace, texts) -> None:  # type: ignore[no-untyped-def]
    aiquery.register(spark)
    rows = spark.sql(
        "SELECT id, ai_query('databricks-gpt-5-4', text) AS a FROM texts WHERE id < 2"
    ).collect()
    assert {r.id: r.a for r in rows} == {0: answer(TEXTS[0]), 1: answer(TEXTS[1])}
    # A gateway name over several Arrow batches: every batch names the same endpoint.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "2")
    try:
        many = spark.sql(
            "SELECT id, ai_query('system.ai.gpt-5-4', concat('Summarize: row ', id, '. x')) AS a "
            "FROM range(0, 9, 1, 1)"
        ).collect()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert sorted((r.id, r.a) for r in many) == [(i, f"row {i}.") for i in range(9)]


def test_order_is_preserved_with_random_latency(spark, workspace, control: EmulatorControl) -> None:  # type: ignore[no-untyped-def]
    control.set_faults(
        "databricks-gpt-5-4", latency_ms=5, latency_distribution="exponential", seed=5
    )
    df = spark.range(0, 1200, numPartitions=2).selectExpr(
        "id", "concat('Summarize: row ', id, '. tail') AS p"
    )
    df.createOrReplaceTempView("ordered")
    out = aiquery.sql(
        spark, "SELECT id, ai_query('databricks-gpt-5-4', p) AS a FROM ordered"
    ).collect()
    assert len(out) == 1200
    assert all(r.a == f"row {r.id}." for r in out)


def test_statement_without_ai_query_is_untouched(spark) -> None:  # type: ignore[no-untyped-def]
    text = "SELECT 'ai_query(x)' AS s, 1 /* ai_query( */ AS n -- ai_query("
    assert aiquery.sql.__module__ == "aiquery.spark.sql"
    from aiquery.spark.sql import rewrite

    assert rewrite(spark, text) == text
    assert aiquery.sql(spark, text).collect()[0].s == "ai_query(x)"


def test_only_call_sites_are_rewritten(spark, workspace, texts) -> None:  # type: ignore[no-untyped-def]
    from aiquery.spark.sql import rewrite

    text = "SELECT  id,\n  ai_query('databricks-gpt-5-4', text)   AS a, 'ai_query(' AS lit -- keep me\nFROM texts"
    out = rewrite(spark, text)
    prefix, rest = out.split("_aiquery_", 1)
    assert prefix == "SELECT  id,\n  "
    assert rest.split("(text)", 1)[1] == "   AS a, 'ai_query(' AS lit -- keep me\nFROM texts"


def test_delta_in_ai_query_out_to_delta(spark, workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, target = str(tmp_path / "reviews"), str(tmp_path / "summaries")
    spark.createDataFrame(
        [(i, f"Review {i} was great. Would buy again.") for i in range(40)], "id INT, review STRING"
    ).write.format("delta").save(source)
    spark.read.format("delta").load(source).createOrReplaceTempView("reviews")
    aiquery.sql(
        spark,
        "SELECT id, ai_query('databricks-gpt-5-4', concat('Summarize: ', review)) AS summary FROM reviews",
    ).write.format("delta").save(target)
    result = spark.read.format("delta").load(target)
    assert result.count() == 40
    assert {r.id: r.summary for r in result.collect()} == {
        i: f"Review {i} was great." for i in range(40)
    }


def test_the_token_never_reaches_plans_or_reprs(spark, workspace, texts) -> None:  # type: ignore[no-untyped-def]
    from aiquery.spark.callspec import analyze

    df = aiquery.sql(
        spark, "SELECT ai_query('databricks-gpt-5-4', text, failOnError => false) AS r FROM texts"
    )
    plans = df._jdf.queryExecution().toString()  # parsed, analyzed, optimized, physical
    assert "ArrowEvalPython [ai_query(text" in plans  # the call, bound and planned
    spec = analyze(spark, "databricks-gpt-5-4")
    assert workspace.token not in plans + repr(spec) + str(spec.endpoint)
