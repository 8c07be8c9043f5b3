"""A Spark Connect client running aiquery end to end; the connect tier runs it in its own process.

Spark Connect mode is process-wide (`SPARK_CONNECT_MODE_ENABLED`), so this cannot share the
test process with the classic session. Usage: `python connect_job.py sc://host:port`, with
DATABRICKS_HOST/DATABRICKS_TOKEN pointing at the test emulator. Prints one JSON report.
"""

from __future__ import annotations

import io
import json
import re
import sys
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import aiquery
from aiquery.functions import ai_classify, ai_query

BAD_CALLS = [
    "ai_query('databricks-gpt-5', 'x', modelParameters => named_struct('temperature', 9.0))",
    "ai_query('databricks-gpt-5', 'x', colour => 'red')",
    "ai_query('no-such-endpoint', 'x')",
]


def bad_call_class(spark: SparkSession, call: str) -> str:
    """The error class a bad call fails with (its first bracketed name after Spark's)."""
    try:
        spark.sql(f"SELECT {call} AS a").collect()
    except Exception as e:
        classes = re.findall(r"\[([A-Z_.]+)\]", str(e))
        return next((c for c in classes if c != "USER_RAISED_EXCEPTION"), repr(e))
    return "no error"


def main(url: str) -> dict[str, Any]:
    spark = SparkSession.builder.remote(url).getOrCreate()
    report: dict[str, Any] = {"classic": hasattr(spark, "_jsparkSession")}

    # Tags the Spark way: spark-submit --conf and spark-defaults.conf keep only spark.* keys.
    spark.conf.set("spark.aiquery.requestTags", '{"tier": "connect"}')

    aiquery.register(spark)
    # Bad calls fail at the server's analysis with Databricks' class; databricks-gpt-5 is
    # called nowhere else here, so the test can see that nothing reached it.
    report["bad_calls"] = [bad_call_class(spark, call) for call in BAD_CALLS]
    report["plain_sql"] = [
        r.a for r in spark.sql("SELECT ai_query('databricks-gpt-5-4', 'Summarize: Plain SQL works. Yes.') AS a").collect()
    ]  # fmt: skip
    # The server's ai_query function (its SQL extension): the whole syntax in plain SQL.
    named = spark.sql(
        "SELECT ai_query(request => 'Summarize: Named over Connect. Yes.', "
        "endpoint => 'databricks-gpt-5-4', failOnError => false) AS a"
    )
    report["plain_named"] = {"type": named.schema["a"].dataType.simpleString(),
                             "values": [r.a.result for r in named.collect()]}  # fmt: skip

    spark.createDataFrame(
        [(i, f"Summarize: Review {i} is fine. Details follow.") for i in range(20)], "id INT, text STRING"
    ).createOrReplaceTempView("reviews")  # fmt: skip
    full = aiquery.sql(
        spark,
        """SELECT id,
                  ai_query('databricks-gpt-5-4', text, failOnError => false,
                           modelParameters => named_struct('max_tokens', 64)) AS summary,
                  ai_query('databricks-gpt-5-mini', text,
                           returnType => 'STRUCT<label: STRING>',
                           responseFormat => 'STRUCT<label: STRING>') AS label,
                  ai_query('databricks-gte-large-en', text) AS embedding
           FROM reviews ORDER BY id""",
    ).collect()
    report["full_sql"] = [
        {"id": r.id, "summary": r.summary.result, "error": r.summary.errorMessage,
         "label": r.label.label if r.label else None, "dims": len(r.embedding)}
        for r in full
    ]  # fmt: skip

    # Databricks' AI functions: the server's SQL functions, and the DataFrame API's.
    ai = spark.sql(
        "SELECT ai_analyze_sentiment('I am happy') s, ai_similarity('a b', 'a b') sim, "
        "to_json(ai_classify('late parcel', '[\"billing\", \"parcel\"]')) c"
    ).first()
    classified = spark.range(1).select(
        ai_classify(F.lit("late parcel"), ["billing", "parcel"]).alias("c")
    )
    report["ai_functions"] = [ai.s, ai.sim, json.loads(ai.c)["response"], classified.first().c]

    out = io.StringIO()
    with aiquery.progress(spark, stream=out, interval_s=0.2):
        frame = spark.table("reviews").select(
            "id",
            ai_query("databricks-claude-haiku-4-5", F.col("text"), failOnError=False,
                     requestTags={"api": "dataframe"}).alias("a"),
        )  # fmt: skip
        # Sorted here: an orderBy after the UDF would sample its input first, sending twice.
        report["dataframe"] = [r.a.result for r in sorted(frame.collect(), key=lambda r: r.id)]
    report["progress"] = out.getvalue()

    report["flushed"] = aiquery.flush_usage(spark)
    app_id = spark.conf.get("spark.app.id")
    rows = aiquery.sql(
        spark,
        f"SELECT request_id, status_code, request_tags, requester FROM system.ai_gateway.usage "
        f"WHERE spark_app_id = '{app_id}'",
    ).collect()
    report["usage"] = [
        {"request_id": r.request_id, "status": r.status_code, "tags": dict(r.request_tags or {}),
         "requester": r.requester}
        for r in rows
    ]  # fmt: skip
    spark.stop()
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
