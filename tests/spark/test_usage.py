"""Usage tracking end to end: spool → Delta, exactly once, tags, CLI summary, delta-rs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs
import pytest
from usage_calls import flush_at_once

import aiquery
from aiquery.endpoints.catalog import DEFAULT_PRICES
from aiquery.functions import ai_query
from aiquery.serving.control import EmulatorControl
from aiquery.usage import deltalog
from aiquery.usage.driver.committer import committer, flush
from aiquery.usage.driver.settings import usage_settings

pytestmark = pytest.mark.spark
HERE = Path(__file__).parent


@pytest.fixture
def prompts(spark):  # type: ignore[no-untyped-def]
    df = spark.range(0, 400, numPartitions=2).selectExpr(
        "id", "concat('Summarize: item ', id, '. rest') AS p"
    )
    df.createOrReplaceTempView("prompts")
    return df


def usage_rows(spark, request_ids: set[str]) -> list:  # type: ignore[no-untyped-def]
    flush(spark)
    ids = ",".join(f"'{i}'" for i in request_ids) or "''"
    return aiquery.sql(
        spark, f"SELECT * FROM system.ai_gateway.usage WHERE request_id IN ({ids})"
    ).collect()


def test_every_request_is_one_usage_row_under_faults(
    spark, workspace, prompts, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    control.set_faults(
        "databricks-gpt-5-4",
        error_rate_500=0.1,
        error_rate_503=0.05,
        requests_per_minute=12000,
        seed=3,
    )
    spark.conf.set("aiquery.retryMaxAttempts", "3")
    try:
        rows = aiquery.sql(
            spark,
            "SELECT id, ai_query('databricks-gpt-5-4', p, failOnError => false) AS r FROM prompts",
        ).collect()
    finally:
        spark.conf.unset("aiquery.retryMaxAttempts")
    assert len(rows) == 400
    log = control.requests("databricks-gpt-5-4")
    usage = usage_rows(spark, {r["request_id"] for r in log})
    # One usage row per request the server received: same ids, same statuses, no duplicates.
    assert len(usage) == len(log) == len({u.request_id for u in usage})
    assert Counter(u.status_code for u in usage) == Counter(r["status"] for r in log)
    assert 429 in Counter(r["status"] for r in log) and 500 in Counter(r["status"] for r in log)
    served = {r["request_id"]: r for r in log if r["status"] == 200}
    for u in usage:
        if u.status_code == 200:
            assert (u.input_tokens, u.output_tokens) == (
                served[u.request_id]["input_tokens"],
                served[u.request_id]["output_tokens"],
            )
            assert (
                u.total_tokens == u.input_tokens + u.output_tokens and u.tokens_estimated is False
            )
        else:
            assert u.input_tokens is None and u.error_message
    first = usage[0]
    assert first.endpoint_name == "databricks-gpt-5-4"
    assert first.destination_type == "PAY_PER_TOKEN_FOUNDATION_MODEL"
    assert first.api_type == "serving-endpoints/invocations"
    assert first.url.endswith("/serving-endpoints/databricks-gpt-5-4/invocations")
    assert first.user_agent.startswith("aiquery/")
    assert first.requester == spark.sparkContext.sparkUser()
    assert first.spark_app_id == spark.sparkContext.applicationId
    assert {u.attempt for u in usage} >= {1, 2}


def test_flushing_the_same_spool_twice_adds_nothing(
    spark, workspace, prompts, control: EmulatorControl, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    spool = usage_settings(spark).spool_dir
    flush(spark)
    committer(spark).stop()  # no background flush while this test copies files around
    try:
        aiquery.sql(
            spark, "SELECT ai_query('databricks-gpt-5', p) AS a FROM prompts WHERE id < 50"
        ).collect()
        saved = tmp_path / "saved"
        shutil.copytree(spool, saved)
        assert flush(spark) == 50
        for f in saved.glob("*.*"):  # a crash after the commit but before the files were removed
            shutil.copy(f, Path(spool) / f.name.replace(".open", ".jsonl"))
        flush(spark)
        ids = {r["request_id"] for r in control.requests("databricks-gpt-5")}
        assert len(usage_rows(spark, ids)) == 50
    finally:
        committer(spark).start()


def test_usage_sent_to_the_driver_is_one_row_per_request(
    spark, workspace, prompts, control: EmulatorControl, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The delivery clusters without a shared mount use, through the local session: tasks
    send their lines to the coordinator, which spools them on the driver; the committer
    merges them from memory (executors cannot read the driver's disk)."""
    control.set_faults("databricks-gpt-5-nano", error_rate_500=0.1, seed=5)
    spark.conf.set("aiquery.usage.delivery", "driver")
    spark.conf.set("aiquery.usage.spoolDir", str(tmp_path / "driver-spool"))
    try:
        assert usage_settings(spark).delivery == "driver"
        rows = aiquery.sql(
            spark,
            "SELECT ai_query('databricks-gpt-5-nano', p, failOnError => false) AS a "
            "FROM prompts WHERE id < 150",
        ).collect()
        assert committer(spark).in_memory
        log = control.requests("databricks-gpt-5-nano")
        usage = usage_rows(spark, {r["request_id"] for r in log})
    finally:
        spark.conf.unset("aiquery.usage.delivery")
        spark.conf.unset("aiquery.usage.spoolDir")
    assert len(rows) == 150 and all(r.a.result for r in rows)
    assert len(usage) == len(log) == len({u.request_id for u in usage}) > 150  # retried 500s
    assert Counter(u.status_code for u in usage) == Counter(r["status"] for r in log)
    assert all(u.spark_task and u.requester for u in usage)
    assert not list((tmp_path / "driver-spool").glob("*.open"))  # every writer said it was done


def test_concurrent_committers_do_not_duplicate(
    spark, workspace, prompts, control: EmulatorControl
) -> None:  # type: ignore[no-untyped-def]
    from aiquery.usage.driver.committer import UsageCommitter

    committer(spark).stop()
    try:
        aiquery.sql(
            spark, "SELECT ai_query('databricks-gpt-5-mini', p) AS a FROM prompts WHERE id < 120"
        ).collect()
        location, spool = usage_settings(spark).location, usage_settings(spark).spool_dir
        flush_at_once([UsageCommitter(spark, spool, location) for _ in range(2)], timeout_s=120)
        ids = {r["request_id"] for r in control.requests("databricks-gpt-5-mini")}
        assert len(usage_rows(spark, ids)) == 120
    finally:
        committer(spark).start()


def test_request_tags_every_way(spark, workspace, prompts, control: EmulatorControl) -> None:  # type: ignore[no-untyped-def]
    aiquery.sql(spark, """SET aiquery.requestTags = '{"project": "chatbot", "team": "ml"}'""")
    try:
        aiquery.sql(
            spark, "SELECT ai_query('databricks-gpt-5-4', p) FROM prompts WHERE id < 3"
        ).collect()
        spark.conf.set("aiquery.requestTags", '{"team": "search"}')
        spark.table("prompts").where("id < 2").select(
            ai_query("databricks-gpt-5-nano", "p", requestTags={"cost_center": "42"})
        ).collect()
    finally:
        spark.conf.unset("aiquery.requestTags")
    by_endpoint = {r["endpoint"]: r["request_tags"] for r in control.requests()}
    assert by_endpoint["databricks-gpt-5-4"] == {"project": "chatbot", "team": "ml"}
    assert by_endpoint["databricks-gpt-5-nano"] == {"team": "search", "cost_center": "42"}
    usage = usage_rows(spark, {r["request_id"] for r in control.requests()})
    assert {(u.endpoint_name, tuple(sorted(u.request_tags.items()))) for u in usage} == {
        ("databricks-gpt-5-4", (("project", "chatbot"), ("team", "ml"))),
        ("databricks-gpt-5-nano", (("cost_center", "42"), ("team", "search"))),
    }


def test_usage_table_reads_without_spark_and_the_cli(
    spark, workspace, prompts, control: EmulatorControl, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from aiquery.usage.report import load_rows

    spark.conf.set("aiquery.requestTags", '{"team": "cli-test"}')
    try:
        aiquery.sql(
            spark, "SELECT ai_query('databricks-claude-haiku-4-5', p) FROM prompts WHERE id < 7"
        ).collect()
    finally:
        spark.conf.unset("aiquery.requestTags")
    flush(spark)
    location = usage_settings(spark).location
    rows = load_rows(location)  # pyarrow reads the log and the files: no Spark, no delta-rs
    mine = [r for r in rows if r["endpoint_name"] == "databricks-claude-haiku-4-5"]
    assert len(mine) == 7
    cli = usage_cli("--table", location, "--by", "endpoint", "--by", "team", "--since", "1d")
    line = next(
        line
        for line in cli.stdout.splitlines()
        if "databricks-claude-haiku-4-5" in line and "cli-test" in line
    )
    assert line.split()[2] == "7"  # endpoint, team, requests
    # cost_usd, from the endpoint's default price, for the same rows
    header = next(h for h in cli.stdout.splitlines() if h.startswith("endpoint")).split()
    price = DEFAULT_PRICES["databricks-claude-haiku-4-5"]
    tagged = [r for r in mine if (r["request_tags"] or {}).get("team") == "cli-test"]
    cost = price.cost(
        sum(r["input_tokens"] for r in tagged), sum(r["output_tokens"] for r in tagged)
    )
    assert float(line.split()[header.index("cost_usd")]) == pytest.approx(cost, abs=5e-5)
    out = tmp_path / "usage.html"
    usage_cli("dashboard", "--table", location, "--out", str(out))
    assert "databricks-claude-haiku-4-5" in out.read_text()


def usage_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`aiquery usage ...`, once: it reads the table without delta-rs, and exits cleanly."""
    done = subprocess.run(
        [sys.executable, "-m", "aiquery.cli", "usage", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_the_log_reader_lists_exactly_the_files_delta_rs_lists(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from deltalake import DeltaTable

    table = tmp_path / "log table"  # a space: paths in the log are URL-encoded
    spark.range(5).selectExpr("id", "CAST(id % 2 AS STRING) AS part").write.format(
        "delta"
    ).partitionBy("part").save(str(table))
    # Table properties: the checkpoint's metaData then holds a map, as the usage table's does.
    spark.sql(f"ALTER TABLE delta.`{table}` SET TBLPROPERTIES ('delta.appendOnly' = 'false')")
    for i in range(10):  # past the checkpoint at version 10, then commits after it
        spark.range(i, i + 3).selectExpr("id", "CAST(id % 2 AS STRING) AS part").write.format(
            "delta"
        ).mode("append").save(str(table))
    spark.sql(f"DELETE FROM delta.`{table}` WHERE id = 3")  # remove actions
    assert list((table / "_delta_log").glob("*.checkpoint.parquet"))

    snapshot = deltalog.snapshot(pafs.LocalFileSystem(), str(table))
    expected = {unquote(urlparse(uri).path) for uri in DeltaTable(str(table)).file_uris()}
    assert snapshot.version == 12
    assert set(snapshot.files) == expected and len(snapshot.files) == len(expected)


@pytest.mark.parametrize(
    ("properties", "then", "reason"),
    [
        ("'delta.columnMapping.mode' = 'name'", None, "maps column names"),
        (
            "'delta.enableDeletionVectors' = 'true'",
            "DELETE FROM {t} WHERE id = 1",
            "deletion vector",
        ),
    ],
)
def test_a_table_the_log_reader_does_not_handle_is_read_by_delta_rs(
    spark, tmp_path: Path, properties: str, then: str | None, reason: str
) -> None:  # type: ignore[no-untyped-def]
    from aiquery.usage.report import load_rows

    table = tmp_path / "usage"
    t = f"delta.`{table}`"
    spark.sql(
        f"CREATE TABLE {t} (request_id STRING, event_time TIMESTAMP, id INT) USING delta "
        f"TBLPROPERTIES ({properties})"
    )
    spark.sql(f"INSERT INTO {t} SELECT uuid(), current_timestamp(), id FROM range(10)")
    if then:
        spark.sql(then.format(t=t))
    with pytest.raises(deltalog.UnsupportedTableError, match=reason):
        deltalog.snapshot(pafs.LocalFileSystem(), str(table))
    # delta-rs' query engine reads it, deleted rows and mapped names applied.
    rows = load_rows(table)
    assert sorted(r["id"] for r in rows) == [i for i in range(10) if not (then and i == 1)]
