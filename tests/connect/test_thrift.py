"""ai_query over JDBC: a Spark Thrift server (no Python driver) started with `aiquery jvm
--args`, on a loopback port, queried with the `beeline` that ships in PySpark's `bin/`. The
server's Python companion analyses calls and commits usage."""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyspark
import pytest
from spark_servers import free_port, running

from aiquery.protocols.common import Message
from aiquery.serving.control import EmulatorControl
from aiquery.serving.models import chat_reply
from aiquery.serving.server import EmulatorServer
from aiquery.spark.session import submit_args

pytestmark = pytest.mark.connect

BIN = Path(pyspark.__file__).parent / "bin"
SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


@pytest.fixture(scope="module")
def jdbc_url(
    tmp_path_factory: pytest.TempPathFactory, emulator_server: EmulatorServer
) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("thrift")
    port = free_port()
    command = [
        str(BIN / "spark-submit"), "--class", SERVER_CLASS, "--master", "local[1]",
        *submit_args(),
        "--conf", f"spark.sql.warehouse.dir={root / 'warehouse'}",
        "--conf", f"spark.driver.extraJavaOptions=-Dderby.system.home={root / 'derby'}",
        "--conf", "spark.ui.enabled=false",
        "--hiveconf", f"hive.server2.thrift.port={port}",
        "--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1",
        "spark-internal",
    ]  # fmt: skip
    with running("Thrift server", command, port, root, emulator_server):
        yield f"jdbc:hive2://127.0.0.1:{port}"


def beeline(url: str, statement: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "beeline"), "-u", url, "--silent=true", "--outputformat=csv2", "-e", statement],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ai_query_over_jdbc_with_the_whole_syntax(
    jdbc_url: str, emulator: EmulatorServer, control: EmulatorControl
) -> None:
    """Databricks' statements over one JDBC session: its own request tags (`SET`), a
    persistent SQL function and view over ai_query, positional, named and embeddings calls,
    and system.ai_gateway.usage read back in the same session == the emulator's log."""
    prompts = ["Summarize: Asked over JDBC. Answered anyway.", "Summarize: A second row. Fine."]
    rows = ", ".join(f"({i}, '{p}')" for i, p in enumerate(prompts))
    done = beeline(
        jdbc_url,
        f"""SET spark.aiquery.requestTags={{"client": "beeline"}};
        CREATE OR REPLACE TABLE notes AS SELECT * FROM VALUES {rows} AS v(id, text);
        CREATE OR REPLACE FUNCTION summarize(t STRING) RETURNS STRING
          RETURN ai_query('databricks-gpt-5-4', t);
        CREATE OR REPLACE VIEW labelled AS SELECT id, ai_query('databricks-gpt-5-mini', text,
          returnType => 'STRUCT<label: STRING>', responseFormat => 'STRUCT<label: STRING>') AS l
          FROM notes;
        SELECT 'summary' AS k, summarize(text) AS v FROM notes;
        SELECT 'label' AS k, l.label IS NOT NULL AS v FROM labelled;
        SELECT 'named' AS k, ai_query(request => text, endpoint => 'databricks-gpt-5-4',
          failOnError => false).result AS v FROM notes WHERE id = 0;
        SELECT 'dims' AS k, size(ai_query('databricks-gte-large-en', text)) AS v FROM notes;
        SELECT 'ai' AS k, ai_analyze_sentiment('I am happy') AS v,
          variant_get(ai_classify('late parcel', '["billing", "parcel"]'), '$.response[0]', 'string') AS c;
        SELECT 'usage' AS k, request_id, request_tags['client'], endpoint_name FROM system.ai_gateway.usage;""",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = [r for r in csv.reader(done.stdout.splitlines()) if r]
    answers = {chat_reply([Message("user", p)]).text for p in prompts}
    assert {r[1] for r in out if r[0] == "summary"} == answers
    assert [r[1] for r in out if r[0] == "label"] == ["true", "true"]
    assert [r[1] for r in out if r[0] == "named"] == [
        chat_reply([Message("user", prompts[0])]).text
    ]
    assert {r[1] for r in out if r[0] == "dims"} == {"1024"}
    [ai] = [r[1:] for r in out if r[0] == "ai"]
    assert ai == ["positive", "parcel"]
    served = control.requests()
    usage = {r[1]: r[2] for r in out if r[0] == "usage"}
    assert sorted(usage) == sorted(r["request_id"] for r in served)
    assert set(usage.values()) == {"beeline"}, [r[2:] for r in out if r[0] == "usage"]


def test_a_bad_call_over_jdbc_names_its_class_and_sends_nothing(
    jdbc_url: str, emulator: EmulatorServer, control: EmulatorControl
) -> None:
    done = beeline(jdbc_url, "SELECT ai_query('no-such-endpoint', 'x');")
    assert "AI_FUNCTION_ENDPOINT_NOT_FOUND" in done.stdout + done.stderr
    assert control.requests() == []
