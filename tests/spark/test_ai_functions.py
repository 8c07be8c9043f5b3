"""Databricks' task AI functions on real local Spark against the real emulator: each
documentation example verbatim, NULLs, argument errors, v1 and v2 forms, failures, batching,
usage rows naming the function, the DataFrame API and the text-rewriting path."""

from __future__ import annotations

import json

import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import functions as F
from pyspark.sql.types import FloatType, StringType, StructType, VariantType

import aiquery
from aiquery import functions as ai
from aiquery.serving.control import EmulatorControl
from aiquery.spark.aifunctions import DEFAULT_CHAT, DEFAULT_EMBEDDINGS
from aiquery.spark.sql import rewrite

pytestmark = pytest.mark.spark

SUMMARY_TEXT = (
    "    'Apache Spark is a unified analytics engine for large-scale data processing. ' ||\n"
    "    'It provides high-level APIs in Java, Scala, Python and R, and an optimized ' ||\n"
    "    'engine that supports general execution graphs. It also supports a rich set ' ||\n"
    "    'of higher-level tools including Spark SQL for SQL and structured data ' ||\n"
    "    'processing, pandas API on Spark for pandas workloads, MLlib for machine ' ||\n"
    "    'learning, GraphX for graph processing, and Structured Streaming for incremental ' ||\n"
    "    'computation and stream processing.',\n"
)
# Databricks' documented examples, verbatim, with the value the emulator's models answer
# (the documented value where the emulator's rules reach it) and the documented type.
EXAMPLES = [
    ("SELECT ai_analyze_sentiment('I am happy');", "positive", StringType()),
    ("SELECT ai_analyze_sentiment('I am sad');", "negative", StringType()),
    ('SELECT ai_classify("My password is leaked.", ARRAY("urgent", "not urgent"));', "urgent", StringType()),
    ("SELECT ai_extract(\n    'John Doe lives in New York and works for Acme Corp.',\n    array('person', 'location', 'organization')\n  );",
     {"person": "John Doe", "location": "New York", "organization": "Acme Corp."}, None),
    ("SELECT ai_extract(\n    'Send an email to jane.doe@example.com about the meeting at 10am.',\n    array('email', 'time')\n  );",
     {"email": "jane.doe@example.com", "time": "10am"}, None),
    ("SELECT ai_fix_grammar('This sentence have some mistake');", "This sentence has some mistakes", StringType()),
    ("SELECT ai_fix_grammar('She dont know what to did.');", "She doesn't know what to do.", StringType()),
    ("SELECT ai_fix_grammar('He go to school every days.');", "He goes to school every day.", StringType()),
    ("SELECT ai_gen('Generate a concise, cheerful email title for a summer bike sale with 20% discount');",
     "Generate a concise, cheerful email title for a summer bike sale with 20% discount", StringType()),
    ("SELECT ai_mask(\n    'John Doe lives in New York. His email is john.doe@example.com.',\n    array('person', 'email')\n  );",
     "[MASKED] lives in New York. His email is [MASKED].", StringType()),
    ("SELECT ai_mask(\n    'Contact me at 555-1234 or visit us at 123 Main St.',\n    array('phone', 'address')\n  );",
     "Contact me at [MASKED] or visit us at [MASKED]", StringType()),
    ("SELECT ai_similarity('Apache Spark', 'Apache Spark');", 1.0, FloatType()),
    ("SELECT ai_summarize(\n" + SUMMARY_TEXT + "    20\n  );",
     "Apache Spark is a unified analytics engine for large-scale data processing. It provides high-level APIs in Java, Scala, Python and",
     StringType()),
    ("SELECT ai_translate('Hello, how are you?', 'es');", "Hola, cómo estás?", StringType()),
    ("SELECT ai_translate('La vida es un hermoso viaje.', 'en');", "Life is a beautiful journey.", StringType()),
]  # fmt: skip
TABLE_EXAMPLES = [
    "SELECT\n    description,\n    ai_classify(description, ARRAY('clothing', 'shoes', 'accessories', 'furniture')) AS category\n  FROM\n    products\n  LIMIT 10;",
    "SELECT\n    question,\n    ai_gen(\n      'You are a teacher. Answer the students question in 50 words: ' || question\n    ) AS answer\n  FROM\n    questions",
    "SELECT\n   company_name\n  FROM\n   customers\n  ORDER BY ai_similarity(company_name, 'Databricks') DESC\n  LIMIT 1",
]  # fmt: skip


def run(spark, statement: str):  # type: ignore[no-untyped-def]
    return spark.sql(statement.rstrip().rstrip(";"))


@pytest.fixture
def doc_tables(spark):  # type: ignore[no-untyped-def]
    spark.createDataFrame(
        [("Leather shoes with rubber soles",), ("A wooden furniture set: table and chairs",),
         ("Cotton clothing for summer",)], "description STRING",
    ).createOrReplaceTempView("products")  # fmt: skip
    spark.createDataFrame([("What is Spark?",)], "question STRING").createOrReplaceTempView(
        "questions"
    )
    spark.createDataFrame(
        [("Acme Corp",), ("Databricks Inc.",), ("Initech",)], "company_name STRING"
    ).createOrReplaceTempView("customers")


def test_each_documentation_example_runs_verbatim_with_its_documented_type(
    spark, workspace, doc_tables, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    for statement, expected, expected_type in EXAMPLES:
        df = run(spark, statement)
        field = df.schema.fields[0]
        [[value]] = df.collect()
        if isinstance(expected, dict):
            assert isinstance(field.dataType, StructType), statement
            assert [f.name for f in field.dataType.fields] == list(expected)
            assert value.asDict() == expected, statement
        else:
            assert field.dataType == expected_type, statement
            assert value == expected, statement
    products = run(spark, TABLE_EXAMPLES[0]).collect()
    assert {r.description: r.category for r in products} == {
        "Leather shoes with rubber soles": "shoes",
        "A wooden furniture set: table and chairs": "furniture",
        "Cotton clothing for summer": "clothing",
    }
    [answer] = run(spark, TABLE_EXAMPLES[1]).collect()
    assert answer.question == "What is Spark?" and answer.answer == "What is Spark?"
    [best] = run(spark, TABLE_EXAMPLES[2]).collect()
    assert best.company_name == "Databricks Inc."
    # Every function's requests went to the functions' default endpoints.
    assert {r["endpoint"] for r in control.requests()} == {DEFAULT_CHAT, DEFAULT_EMBEDDINGS}


def test_null_content_is_null_and_sends_nothing(spark, workspace, control: EmulatorControl) -> None:  # type: ignore[no-untyped-def]
    spark.createDataFrame([("I love it",), (None,)], "t STRING").createOrReplaceTempView("nulls")
    rows = spark.sql(
        """SELECT t, ai_analyze_sentiment(t) s, ai_classify(t, array('love', 'hate')) c,
                  ai_extract(t, array('person')) e, ai_fix_grammar(t) g, ai_gen(t) n,
                  ai_mask(t, array('email')) m, ai_similarity(t, 'love') sim,
                  ai_summarize(t) su, ai_translate(t, 'de') tr,
                  ai_classify(t, '["love", "hate"]') c2
           FROM nulls"""
    ).collect()
    by_text = {r.t: r for r in rows}
    assert all(v is None for k, v in by_text[None].asDict().items())
    assert by_text["I love it"].s == "positive" and by_text["I love it"].c == "love"
    assert by_text["I love it"].tr == "I Liebe it"
    # One request per function for the one non-NULL row (similarity: one batch of two texts).
    assert len(control.requests()) == 10


BAD_CALLS = [
    ("ai_classify('x', array('only'))", "AI_FUNCTION_INVALID_LABELS"),
    ("ai_classify('x', array(" + ", ".join(f"'l{i}'" for i in range(21)) + "))", "AI_FUNCTION_INVALID_LABELS"),
    ("ai_classify('x', '[\"a\"]')", "AI_FUNCTION_INVALID_LABELS"),
    ("ai_classify('x', array('a', 'a'))", "AI_FUNCTION_INVALID_LABELS"),
    ("ai_classify('x', array('a', 'b'), map('multilabel', 'maybe'))", "AI_FUNCTION_INVALID_OPTIONS"),
    ("ai_classify('x', array('a', 'b'), map('colour', 'red'))", "AI_FUNCTION_INVALID_OPTIONS"),
    ("ai_classify('x', array('a', 'b'), map('version', '2.0', 'enable_rationales', 'true'))", "AI_FUNCTION_INVALID_OPTIONS"),
    ("ai_classify(t, labels => array('a', 'b'), colour => 1)", "UNRECOGNIZED_PARAMETER_NAME"),
    ("ai_classify(t)", "WRONG_NUM_ARGS"),
    ("ai_classify(t, array(t, 'b'))", "must be a constant"),
    ("ai_extract('x', '{\"a\": {\"type\": \"date\"}}')", "AI_FUNCTION_INVALID_SCHEMA"),
    ("ai_extract('x', '{\"a\": {\"type\": \"array\", \"items\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}}')", "AI_FUNCTION_INVALID_SCHEMA"),
    ("ai_extract('x', '{\"a\": {\"type\": \"string\", \"required\": true}}')", "AI_FUNCTION_INVALID_SCHEMA"),
    ("ai_extract('x', 'not json')", "AI_FUNCTION_INVALID_SCHEMA"),
    ("ai_translate(t, 'xx')", "AI_FUNCTION_UNSUPPORTED_LANGUAGE"),
    ("ai_summarize(t, -1)", "AI_FUNCTION_INVALID_MAX_WORDS"),
    ("ai_summarize(t, 'ten')", "AI_FUNCTION_INVALID_MAX_WORDS"),
    ("ai_summarize(42)", "must be a STRING"),
    ("ai_similarity(t, t, t)", "WRONG_NUM_ARGS"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error"), BAD_CALLS, ids=[c for c, _ in BAD_CALLS])
def test_invalid_arguments_fail_at_analysis_and_send_nothing(
    spark, workspace, control: EmulatorControl, call: str, error: str
) -> None:  # type: ignore[no-untyped-def]
    spark.createDataFrame([("text",)], "t STRING").createOrReplaceTempView("bad_args")
    with pytest.raises(AnalysisException, match=error):
        spark.sql(f"SELECT {call} FROM bad_args")
    assert control.requests() == []


def test_v2_classify_and_extract_answer_databricks_variant_shapes(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    df = spark.sql(
        """SELECT
          ai_classify('Customer wants refund and reports product arrived broken.',
            '{"billing_issue": "Payment or refund requests",
              "product_defect": "Damaged or malfunctioning items",
              "shipping_issue": "Delivery problems"}',
            MAP('version', '2.0', 'multilabel', 'true')) AS multi,
          ai_classify('Customer cannot complete checkout due to payment processing error.',
            '["billing_error", "product_defect"]',
            MAP('enable_confidence_scores', 'true', 'enableRationales', 'true')) AS scored,
          ai_extract('Invoice #12345 from Acme Corp for $1,250.00 dated 2024-01-15',
            '{"invoice_id": {"type": "string", "description": "Unique invoice identifier"},
              "vendor_name": {"type": "string", "description": "Legal business name"},
              "total_amount": {"type": "number", "description": "Total invoice amount"},
              "invoice_date": {"type": "string", "description": "Date in YYYY-MM-DD format"}}'
          ) AS invoice,
          ai_extract('Invoice #12345 from Acme Corp, amount: $1,250.00 USD',
            '{"total_amount": {"type": "number"},
              "currency": {"type": "enum", "labels": ["USD", "EUR", "GBP"]},
              "vendor": {"type": "object", "properties": {"name": {"type": "string"}}}}',
            MAP('enable_citations', 'true')) AS cited"""
    )
    assert all(isinstance(f.dataType, VariantType) for f in df.schema.fields)
    row = df.selectExpr(
        "to_json(multi) m", "to_json(scored) s", "to_json(invoice) i", "to_json(cited) c"
    ).first()
    assert json.loads(row.m) == {
        "error_message": None,
        "response": ["billing_issue", "product_defect"],
    }
    scored = json.loads(row.s)
    assert [r["value"] for r in scored["response"]] == ["billing_error"]
    assert (
        0 <= scored["response"][0]["confidence_score"] <= 1 and scored["response"][0]["rationale"]
    )
    assert json.loads(row.i)["response"] == {
        "invoice_id": "12345", "vendor_name": "Acme Corp", "total_amount": 1250.0, "invoice_date": "2024-01-15",
    }  # fmt: skip
    cited = json.loads(row.c)
    assert cited["response"]["currency"]["value"] == "USD"
    assert cited["response"]["vendor"]["value"] == {"name": "Acme Corp"}
    [currency_citation] = cited["response"]["currency"]["citation_ids"]
    span = next(c for c in cited["metadata"]["citations"] if c["id"] == currency_citation)
    assert (
        "Invoice #12345 from Acme Corp, amount: $1,250.00 USD"[span["start"] : span["stop"]]
        == "USD"
    )
    # Structured output: every request carried the task's JSON schema.
    assert len(control.requests()) == 4


def test_failed_requests_raise_in_v1_and_are_data_in_v2(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    control.set_faults(DEFAULT_CHAT, error_rate_500=1.0)
    spark.conf.set("aiquery.retryMaxAttempts", "1")
    try:
        with pytest.raises(Exception, match="for function ai_classify") as raised:
            spark.sql("SELECT ai_classify('late parcel', array('billing', 'shipping'))").collect()
        assert "AI_FUNCTION_HTTP_REQUEST_ERROR" in str(raised.value)
        row = spark.sql(
            "SELECT to_json(ai_classify('late parcel', '[\"billing\", \"shipping\"]')) v"
        ).first()
    finally:
        spark.conf.unset("aiquery.retryMaxAttempts")
    answer = json.loads(row.v)
    assert answer["response"] is None
    assert "AI_FUNCTION_HTTP_REQUEST_ERROR" in answer["error_message"]
    assert "HTTP 500" in answer["error_message"] and "ai_classify" in answer["error_message"]


def test_similarity_batches_its_texts_and_usage_rows_name_each_function(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    from test_usage import usage_rows

    df = spark.range(0, 60, numPartitions=1).selectExpr(
        "concat('report number ', id) a", "concat('report number ', id % 7) b"
    )
    rows = df.select("a", "b", ai.ai_similarity("a", "b").alias("s")).collect()
    assert all(r.s == pytest.approx(1.0) for r in rows if r.a == r.b)
    assert all(0 <= r.s < 1 for r in rows if r.a != r.b)
    log = control.requests(DEFAULT_EMBEDDINGS)
    assert len(log) < len(rows)  # many rows (two texts each) per embeddings request
    spark.sql("SELECT ai_summarize('One. Two. Three.', 1)").collect()
    usage = usage_rows(spark, {r["request_id"] for r in control.requests()})
    assert {u.request_tags["ai_function"] for u in usage} == {"ai_similarity", "ai_summarize"}
    assert len(usage) == len(control.requests())


def test_dataframe_api_and_per_function_endpoints(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([("I hate slow delivery", "es")], "t STRING, lang STRING")
    spark.conf.set("aiquery.aiFunctions.ai_summarize.endpoint", "databricks-gpt-5-nano")
    try:
        row = df.select(
            ai.ai_analyze_sentiment("t").alias("s"),
            ai.ai_classify(F.col("t"), ["billing", "delivery"]).alias("c"),
            ai.ai_classify(
                "t", {"billing": "money", "delivery": "parcels"}, {"multilabel": True}
            ).alias("c2"),
            ai.ai_extract("t", ["speed"]).alias("e"),
            ai.ai_mask("t", ["person"]).alias("m"),
            ai.ai_summarize("t", max_words=2).alias("su"),
            ai.ai_translate("t", F.col("lang")).alias("tr"),
            ai.ai_gen("t").alias("g"),
            ai.ai_fix_grammar("t").alias("fg"),
        ).first()
    finally:
        spark.conf.unset("aiquery.aiFunctions.ai_summarize.endpoint")
    assert (row.s, row.c, row.su) == ("negative", "delivery", "I hate")
    assert json.loads(row.c2.toJson())["response"] == ["delivery"]
    assert row.e.asDict() == {"speed": None} and row.m == "I hate slow delivery"
    by_function = {(r["request_tags"]["ai_function"], r["endpoint"]) for r in control.requests()}
    assert ("ai_summarize", "databricks-gpt-5-nano") in by_function
    assert {e for f, e in by_function if f != "ai_summarize"} == {DEFAULT_CHAT}
    with pytest.raises(Exception, match="AI_FUNCTION_UNSUPPORTED_LANGUAGE"):
        spark.createDataFrame([("hi", "klingon")], "t STRING, lang STRING").select(
            ai.ai_translate("t", F.col("lang"))
        ).collect()


def test_the_text_rewriting_path_runs_the_functions_too(spark, workspace) -> None:  # type: ignore[no-untyped-def]
    spark.createDataFrame(
        [("I am happy", "I am happy")], "a STRING, b STRING"
    ).createOrReplaceTempView("pairs")
    statement = rewrite(
        spark,
        "SELECT ai_analyze_sentiment(a) s, ai_similarity(a, b) sim, "
        "ai_classify(a, '[\"happy\", \"sad\"]', map('multilabel', 'true')) c, "
        "ai_translate(ai_fix_grammar(a), 'fr') t FROM pairs",
    )
    assert "ai_" not in statement.replace("_aiquery_", "")
    row = spark.sql(statement).selectExpr("s", "sim", "to_json(c) c", "t").first()
    assert (row.s, row.sim, json.loads(row.c)["response"], row.t) == (
        "positive",
        1.0,
        ["happy"],
        "I am happy",
    )
    with pytest.raises(aiquery.errors.AnalysisError, match="AI_FUNCTION_INVALID_LABELS"):
        rewrite(spark, "SELECT ai_mask(a, array()) FROM pairs")
