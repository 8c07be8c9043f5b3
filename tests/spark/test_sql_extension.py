"""`ai_query` as a Spark SQL function (the JVM extension, compiled from source by the install):
plain `spark.sql` with Databricks' whole signature, errors at analysis with nothing sent,
and the `spark-sql` shell with no Python driver at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyspark
import pytest
from pyspark.errors import AnalysisException
from pyspark.sql.types import (
    ArrayType,
    FloatType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

import aiquery
from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.embedding import embed
from aiquery.serving.models import chat_reply
from aiquery.serving.server import EmulatorServer
from aiquery.spark.session import submit_args
from aiquery.usage.driver.committer import flush
from aiquery.usage.driver.spool import spool_files
from aiquery.usage.report import load_rows

pytestmark = pytest.mark.spark


def answer(prompt: str) -> str:
    return chat_reply([Message("user", prompt)]).text


def usage_ids(spark, ids: set[str]) -> list[str]:  # type: ignore[no-untyped-def]
    flush(spark)
    listed = ",".join(f"'{i}'" for i in ids)
    rows = aiquery.sql(
        spark, f"SELECT request_id FROM system.ai_gateway.usage WHERE request_id IN ({listed})"
    ).collect()
    return sorted(r.request_id for r in rows)


def test_plain_spark_sql_takes_the_whole_signature(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    aiquery.register(spark)  # with the extension: nothing to register, usage is committed
    prompt = "Summarize: Plain SQL works. Yes."
    frame = spark.sql(
        f"""SELECT
          ai_query('databricks-gpt-5-4', '{prompt}'),
          ai_query('databricks-gpt-5-4', '{prompt}', 'STRUCT<a: INT>', false) AS positional,
          ai_query(request => '{prompt}', endpoint => 'databricks-gpt-5-4',
                   failOnError => false, modelParameters => named_struct('max_tokens', 2)) AS named,
          ai_query('databricks-gpt-5-4', '{prompt}', 'returnType', 'STRING',
                   'failOnError', false) AS legacy,
          ai_query(endpoint => 'databricks-gte-large-en', request => 'hello') AS vector"""
    )
    error = StructField("errorMessage", StringType())
    assert frame.columns[0] == f"ai_query({prompt})"  # Databricks' name, not a UDF's
    # Four positional arguments: the return type and failOnError hold (it used to be STRING).
    assert frame.schema["positional"].dataType == StructType(
        [StructField("result", StructType([StructField("a", IntegerType())])), error]
    )
    assert frame.schema["named"].dataType == StructType(
        [StructField("result", StringType()), error]
    )
    assert frame.schema["vector"].dataType == ArrayType(FloatType())
    row = frame.collect()[0]
    assert row[0] == answer(prompt)
    assert row.positional.result is None and "AI_FUNCTION_HTTP_PARSE_CAST_ERROR" in (
        row.positional.errorMessage
    )
    assert row.named.errorMessage is None and len(row.named.result) <= 8  # max_tokens 2
    assert (row.legacy.result, row.legacy.errorMessage) == (answer(prompt), None)
    assert len(row.vector) == 1024
    served = control.requests()
    assert len(served) == 5
    assert usage_ids(spark, {r["request_id"] for r in served}) == sorted(
        r["request_id"] for r in served
    )
    # The system catalog: Databricks' name in plain Spark SQL, read-only.
    listed = ",".join(f"'{r['request_id']}'" for r in served)
    plain = spark.sql(
        f"SELECT request_id, status_code FROM system.ai_gateway.usage WHERE request_id IN ({listed})"
    ).collect()
    assert sorted(r.request_id for r in plain) == sorted(r["request_id"] for r in served)
    assert {r.status_code for r in plain} == {200}
    with pytest.raises(Exception, match="read-only"):
        spark.sql("DELETE FROM system.ai_gateway.usage WHERE true").collect()


def test_persistent_views_and_sql_functions_may_call_ai_query(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    """Databricks' documented `CREATE FUNCTION ... RETURN ai_query(...)`, and a view."""
    spark.sql(
        "CREATE OR REPLACE FUNCTION correct_grammar(text STRING) RETURNS STRING "
        "RETURN ai_query('databricks-gpt-5-4', concat('Summarize: ', text))"
    )
    spark.sql(
        "CREATE OR REPLACE VIEW summaries AS SELECT id, ai_query('databricks-gpt-5-4', "
        "concat('Summarize: Row ', id, ' is here. More.')) AS s FROM range(3)"
    )
    try:
        assert spark.sql("SELECT correct_grammar('It are fine. Yes.') AS g").first().g == answer(
            "Summarize: It are fine. Yes."
        )
        assert sorted(r.s for r in spark.table("summaries").collect()) == [
            f"Row {i} is here." for i in range(3)
        ]
    finally:
        spark.sql("DROP VIEW IF EXISTS summaries")
        spark.sql("DROP FUNCTION IF EXISTS correct_grammar")
    assert len(control.requests()) == 4


def test_embeddings_cross_packed_and_come_back_bit_for_bit(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    """Vectors leave the worker as packed BINARY and Spark's own expressions unpack them;
    the unpacking reads the call several times, and Spark still sends each input once."""
    frame = spark.sql(
        """SELECT id,
             ai_query('databricks-gte-large-en', text) AS v,
             ai_query('databricks-gte-large-en', text, returnType => 'ARRAY<DOUBLE>') AS d,
             ai_query('databricks-gte-large-en', text, failOnError => false) AS w
           FROM (SELECT id, IF(id = 2, NULL, concat('packed ', id)) AS text FROM range(0, 5, 1, 2))"""
    )
    assert frame.schema["v"].dataType == ArrayType(FloatType())
    assert frame.schema["d"].dataType.simpleString() == "array<double>"
    assert (
        frame.schema["w"].dataType.simpleString()
        == "struct<result:array<float>,errorMessage:string>"
    )
    plan = frame._jdf.queryExecution().executedPlan().toString()
    assert plan.count("UnsafeArrayData.fromPrimitiveArray") == 3  # packed, one unpacking each
    rows = {r.id: r for r in frame.collect()}
    for i in (0, 1, 3, 4):
        vector = np.asarray(embed(f"packed {i}", 1024), dtype=np.float32)
        assert rows[i].v == rows[i].w.result == vector.tolist()
        assert rows[i].d == vector.astype(np.float64).tolist()
        assert rows[i].w.errorMessage is None
    assert rows[2].v is None and rows[2].d is None and rows[2].w.result is None
    assert control.stats()["databricks-gte-large-en"]["items"] == 3 * 4


@pytest.mark.parametrize(
    ("statement", "error_class"),
    [
        ("SELECT ai_query('no-such-endpoint', 'x')", "AI_FUNCTION_ENDPOINT_NOT_FOUND"),
        ("SELECT ai_query('databricks-gpt-5-4', 'x', colour => 'red')", "UNRECOGNIZED_PARAMETER_NAME"),
        (
            "SELECT ai_query('databricks-gpt-5-4', 'x', modelParameters => named_struct('max_tokens', 'a'))",
            "AI_FUNCTION_INVALID_MODEL_PARAMETERS.INVALID_PARAMETER_VALUE",
        ),
        ("SELECT ai_query('databricks-gpt-5-4', 'x', 'NOT A TYPE')", "AI_FUNCTION_INVALID_RETURN_TYPE"),
        ("SELECT ai_query(cast(id AS STRING), 'x') FROM range(2)", "AI_FUNCTION_INVALID_ARGUMENT"),
        ("SELECT ai_query('databricks-gpt-5-4', id) FROM range(2)", "AI_FUNCTION_INVALID_ARGUMENT"),
        ("SELECT ai_query(endpoint => 'databricks-gpt-5-4')", "REQUIRED_PARAMETER_NOT_FOUND"),
    ],
)  # fmt: skip
def test_a_bad_call_fails_at_analysis_with_its_class_and_sends_nothing(
    spark, workspace, control: EmulatorControl, statement: str, error_class: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AnalysisException) as caught:
        spark.sql(statement).collect()
    assert f"[{error_class}]" in str(caught.value)
    assert control.requests() == []


def test_a_retired_model_fails_at_analysis_naming_its_replacement(
    spark, workspace, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AnalysisException) as caught:
        spark.sql("SELECT ai_query('system.ai.dbrx-instruct', 'x')").collect()
    message = str(caught.value)
    assert "[AI_FUNCTION_ENDPOINT_NOT_FOUND]" in message and "has been retired" in message
    assert "'databricks-meta-llama-3-3-70b-instruct'" in message
    assert control.requests() == []


def test_the_spark_sql_shell_runs_ai_query_with_no_python_driver(
    emulator: EmulatorServer, control: EmulatorControl, tmp_path: Path
) -> None:
    """`spark-sql -e` (a JVM only, started with `aiquery jvm --args`): analysis in the Python
    companion the JVM starts, execution in the executors' Python, and usage committed by
    the companion: read back in the same shell, and in the table once the shell exited."""
    warehouse = tmp_path / "warehouse"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIQUERY_", "DATABRICKS_"))}
    env.update(
        DATABRICKS_HOST=emulator.url,
        DATABRICKS_TOKEN=emulator.token,
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    prompts = ["Summarize: The shell has no Python. Still fine.", "Summarize: Nor a driver. Fine."]
    shell = str(Path(pyspark.__file__).parent / "bin" / "spark-sql")
    statements = [
        "CREATE TABLE notes AS SELECT * FROM VALUES "
        + ", ".join(f"({i}, '{p}')" for i, p in enumerate(prompts))
        + " AS v(id, text)",
        # No ORDER BY: a range shuffle samples its input first, which would send twice.
        "SELECT ai_query('databricks-gpt-5-4', text, failOnError => false).result FROM notes",
        "SELECT 'usage', count(*) FROM system.ai_gateway.usage",
        "DESCRIBE DETAIL notes",
    ]
    done = subprocess.run(
        [shell, "--master", "local[1]", *submit_args(),
         "--conf", f"spark.sql.warehouse.dir={warehouse}",
         "--conf", f"spark.driver.extraJavaOptions=-Dderby.system.home={tmp_path / 'derby'}",
         "--conf", "spark.ui.enabled=false",
         "-e", "; ".join(statements)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert sorted(line for line in lines if line in map(answer, prompts)) == sorted(
        map(answer, prompts)
    )
    assert "usage\t2" in lines  # the companion flushed before the read: both requests
    assert any(
        line.startswith("delta\t") for line in lines
    )  # CREATE TABLE ... AS SELECT writes Delta, as on Databricks
    served = control.requests()
    assert len(served) == 2
    # Committed by the companion; nothing left in the spool after the shell exited.
    rows = load_rows(warehouse / "ai_gateway.db" / "usage")
    assert sorted(r["request_id"] for r in rows) == sorted(r["request_id"] for r in served)
    assert all(r["status_code"] == 200 and r["requester"] for r in rows)
    assert spool_files(warehouse / "_aiquery_usage_spool") == []
