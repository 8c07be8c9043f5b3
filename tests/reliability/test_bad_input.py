"""Bad input: each mistake gets an error that names it and the fix, and nothing is sent.

Analysis errors are raised on the driver before any request. Row-level problems (a prompt
over the payload limit, an empty prompt) are that row's error, never a crash, and NULL is
NULL. Text of every kind round-trips intact; bytes that are not UTF-8 arrive as U+FFFD.
"""

from __future__ import annotations

import json

import pytest

import aiquery
from aiquery.errors import AiQueryError, ConfigError
from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.models import chat_reply
from aiquery.spark.sql import rewrite

pytestmark = pytest.mark.spark


def answer(prompt: str) -> str:
    return chat_reply([Message("user", prompt)]).text


@pytest.fixture
def texts(spark):  # type: ignore[no-untyped-def]
    df = spark.createDataFrame(
        [(0, "Spark runs batch jobs. It scales."), (1, None)], "id INT, text STRING"
    )
    df.createOrReplaceTempView("texts")
    return df


@pytest.mark.parametrize(
    ("call", "error_class", "needle"),
    [
        (
            "ai_query('no-such-endpoint', text)",
            "AI_FUNCTION_ENDPOINT_NOT_FOUND",
            "Known endpoints: databricks-",
        ),
        ("ai_query(text, text)", "AI_FUNCTION_INVALID_ARGUMENT", "constant string"),
        (
            "ai_query('databricks-gpt-5-4', text, returnType => 'STRUCT<a INT')",
            "AI_FUNCTION_INVALID_RETURN_TYPE",
            "STRUCT<a INT",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, responseFormat => 'yaml')",
            "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT",
            "json_schema",
        ),
        (
            "ai_query('databricks-gte-large-en', text, responseFormat => 'json_object')",
            "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT",
            "chat",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, modelParameters => named_struct('temperature', 5))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_PARAMETER_VALUE",
            "0 to 2",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, modelParameters => named_struct('max_tokens', -3))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_PARAMETER_VALUE",
            "positive",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, modelParameters => named_struct('messages', 'x'))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.FOUND_RESERVED_PARAMETER_NAME",
            "messages",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, modelParameters => named_struct('colour', 'x'))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.UNKNOWN_PARAMETER_NAME",
            "max_tokens",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, modelParameters => named_struct('max_tokens', id))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.NOT_A_CONSTANT_STRUCT",
            "constant",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, temperature => 0.5)",
            "UNRECOGNIZED_PARAMETER_NAME",
            "modelParameters",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, failOnError => 'yes')",
            "AI_FUNCTION_INVALID_ARGUMENT",
            "true or false",
        ),
        (
            "ai_query(42, text)",
            "AI_FUNCTION_INVALID_ARGUMENT",
            "constant string",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, returnType => 42)",
            "AI_FUNCTION_INVALID_ARGUMENT",
            "returnType",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, responseFormat => 42)",
            "AI_FUNCTION_INVALID_ARGUMENT",
            "responseFormat must be a constant string",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, modelParameters => 'hot')",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.NOT_A_CONSTANT_STRUCT",
            "named_struct",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, responseFormat => '{\"type\": \"json_schema\"}')",
            "AI_FUNCTION_UNSUPPORTED_RESPONSE_FORMAT",
            "json_schema",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, returnType => 'MAP<STRING')",
            "AI_FUNCTION_INVALID_RETURN_TYPE",
            "MAP<STRING",
        ),
        (
            "ai_query('databricks-gpt-5-4')",
            "AI_FUNCTION_INVALID_ARGUMENT",
            "request",
        ),
        (
            "ai_query('databricks-gpt-5-4', text, failOnError => true, failOnError => false)",
            "AI_FUNCTION_INVALID_ARGUMENT",
            "failOnError",
        ),
    ],
)
def test_analysis_errors_fail_before_any_request(
    spark, workspace, texts, control: EmulatorControl, call: str, error_class: str, needle: str
) -> None:  # type: ignore[no-untyped-def]
    # The text-rewriting path (sessions without the SQL extension); the extension's own
    # bad calls are in tests/spark/test_sql_extension.py.
    with pytest.raises(AiQueryError) as caught:
        rewrite(spark, f"SELECT {call} FROM texts")
    assert f"[{error_class}]" in str(caught.value)
    assert needle in str(caught.value)
    assert control.requests() == []


@pytest.mark.parametrize(
    "tags",
    [
        '["a"]',
        '{"team": 1}',
        "not json",
        '{"team": "a", "team": "b"',
        json.dumps({f"k{i}": "v" for i in range(21)}),
        json.dumps({"k" * 65: "v"}),
        json.dumps({"k": "v" * 257}),
    ],
)
def test_bad_request_tags_fail_before_any_request(
    spark, workspace, texts, control: EmulatorControl, tags: str
) -> None:  # type: ignore[no-untyped-def]
    spark.conf.set("aiquery.requestTags", tags)
    try:
        with pytest.raises(ConfigError, match="Databricks-Ai-Gateway-Request-Tags"):
            rewrite(spark, "SELECT ai_query('databricks-gpt-5-4', text) FROM texts")
    finally:
        spark.conf.unset("aiquery.requestTags")
    assert control.requests() == []


def test_a_request_of_the_wrong_type_is_refused_before_any_request(
    spark, workspace, texts, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception) as caught:
        aiquery.sql(spark, "SELECT ai_query('databricks-gpt-5-4', id) FROM texts").collect()
    assert "takes a STRING request" in str(caught.value)
    assert control.requests() == []


def test_a_prompt_over_the_payload_limit_is_that_rows_error(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    spark.range(3).selectExpr(
        "id",
        "CASE WHEN id = 1 THEN repeat('word ', 900000) ELSE concat('Fine ', id, '. Rest.') END AS p",
    ).createOrReplaceTempView("sizes")
    rows = aiquery.sql(
        spark,
        "SELECT id, ai_query('databricks-gpt-5-4', p, failOnError => false) AS r FROM sizes",
    ).collect()
    by_id = {r.id: r.r for r in rows}
    assert (by_id[0].result, by_id[2].result) == ("Fine 0.", "Fine 2.")
    assert by_id[0].errorMessage is None
    assert by_id[1].result is None
    assert "exceeds the 4 MB limit" in by_id[1].errorMessage
    assert "shorten the input" in by_id[1].errorMessage
    assert len(control.requests()) == 2  # the oversized row was never sent


def test_null_is_null_and_an_empty_prompt_is_an_error_nothing_sent(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    spark.createDataFrame(
        [(0, None), (1, ""), (2, "Real text. More.")], "id INT, p STRING"
    ).createOrReplaceTempView("blanks")
    rows = aiquery.sql(
        spark,
        "SELECT id, ai_query('databricks-gpt-5-4', p, failOnError => false) AS r FROM blanks",
    ).collect()
    by_id = {r.id: r.r for r in rows}
    assert (by_id[0].result, by_id[0].errorMessage) == (None, None)
    assert by_id[1].result is None and "empty string" in by_id[1].errorMessage
    assert "NULLIF" in by_id[1].errorMessage
    assert by_id[2].result == "Real text."
    assert len(control.requests()) == 1
    with pytest.raises(Exception, match="empty string"):
        aiquery.sql(spark, "SELECT ai_query('databricks-gpt-5-4', p) FROM blanks").collect()
    assert len(control.requests()) <= 2  # failing fast sends no more than the one real row
    null_only = aiquery.sql(
        spark, "SELECT ai_query('databricks-gpt-5-4', p) AS r FROM blanks WHERE id = 0"
    ).collect()
    assert null_only[0].r is None


ODD_TEXTS = [
    "emoji \U0001f600 and a family \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "combining e\u0301 and a\u0308 marks",
    "right to left \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "control \u0000 nul \u0007 bell \u001b escape and tab\tinside",
    "CJK \u6f22\u5b57 and \ud55c\uad6d\uc5b4 and math \U0001d400",
    'quotes \' " and backslash \\ and json {"a": [1]}',
]


def test_odd_unicode_round_trips_intact(spark, workspace, control: EmulatorControl) -> None:  # type: ignore[no-untyped-def]
    prompts = [f"Summarize: {t}. Then the rest." for t in ODD_TEXTS]
    spark.createDataFrame(list(enumerate(prompts)), "id INT, p STRING").createOrReplaceTempView(
        "odd"
    )
    rows = aiquery.sql(
        spark, "SELECT id, ai_query('databricks-gpt-5-4', p) AS r FROM odd"
    ).collect()
    assert sorted((r.id, r.r) for r in rows) == [(i, answer(p)) for i, p in enumerate(prompts)]
    assert all(t.split()[1] in answer(p) for t, p in zip(ODD_TEXTS, prompts, strict=True))


def test_bytes_that_are_not_utf8_arrive_as_replacement_characters(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    rows = aiquery.sql(
        spark,
        "SELECT ai_query('databricks-gpt-5-4', "
        "concat('Summarize: caf', CAST(X'C328FF' AS STRING), ' au lait. Rest.')) AS r",
    ).collect()
    assert rows[0].r == answer("Summarize: caf\ufffd(\ufffd au lait. Rest.")
    assert len(control.requests()) == 1


def test_custom_model_inputs_of_every_spark_type_are_sent_as_json(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    control.put_endpoint("typed-model", task="custom")
    aiquery.configure(
        {
            "typed-model": {
                "protocol": "databricks",
                "base_url": workspace.url,
                "task": "custom",
                "token": workspace.token,
            }
        }
    )
    row = aiquery.sql(
        spark,
        "SELECT ai_query('typed-model', named_struct('when', DATE'2026-11-29'), 'STRING', true) AS d, "
        "ai_query('typed-model', named_struct('at', TIMESTAMP_NTZ'2026-11-29 08:30:00', "
        "'price', CAST(2.25 AS DECIMAL(6,2)), 'blob', X'00FF', 'n', 1), 'DOUBLE', true) AS total",
    ).first()
    # Strings only: the model echoes them, so the date arrives in ISO 8601. With numbers,
    # the model sums them, so the decimal arrived as a number.
    assert row.d == "2026-11-29"
    assert row.total == pytest.approx(3.25)
