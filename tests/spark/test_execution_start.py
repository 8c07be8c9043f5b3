"""Planning has no side effects: analysing call sites starts no server or thread and writes no
table; binding a call site for execution (`aiquery.spark.runtime`) starts what it needs, once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.errors import AnalysisException

import aiquery
from aiquery.endpoints.registry import EMBEDDED, reset_configuration
from aiquery.serving import embedded
from aiquery.spark.callspec import analyze
from aiquery.spark.runtime import bind
from aiquery.usage.driver.committer import committer

pytestmark = pytest.mark.spark


@pytest.fixture
def fresh_usage(spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A usage location and spool nobody has used, and the built-in names on the embedded default."""
    for var in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "AIQUERY_ENDPOINTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no aiquery.toml here
    reset_configuration()
    spark.conf.set("aiquery.usage.location", str(tmp_path / "usage"))
    spark.conf.set("aiquery.usage.spoolDir", str(tmp_path / "spool"))
    try:
        yield tmp_path
    finally:
        committer(spark).stop()
        spark.conf.unset("aiquery.usage.location")
        spark.conf.unset("aiquery.usage.spoolDir")


def own_threads() -> set[threading.Thread]:
    """This process's threads, but Py4J's: the JVM's analysis calls back on one of those."""
    return {
        t
        for t in threading.enumerate()
        if not (getattr(getattr(t, "_target", None), "__module__", None) or "").startswith("py4j")
    }


def test_analysis_starts_no_server_or_thread_and_writes_no_table(spark, fresh_usage: Path) -> None:  # type: ignore[no-untyped-def]
    threads, server = own_threads(), embedded.embedded_server()

    spec = analyze(spark, "databricks-gpt-5-4", fail_on_error=False, model_parameters={"n": 1})
    with pytest.raises(AnalysisException, match="temperature"):
        # The first call site is fine, the second is not (aiquery's Python analysis says
        # so): neither starts anything, since calls are bound only for execution.
        aiquery.sql(
            spark,
            "SELECT ai_query('databricks-gpt-5-4', 'a'), ai_query('databricks-gpt-5-4', 'b', "
            "modelParameters => named_struct('temperature', 9.0))",
        )
    # A statement analysed, never run, starts nothing either.
    assert aiquery.sql(spark, "SELECT ai_query('databricks-gpt-5-4', 'a') AS a").columns == ["a"]

    assert spec.endpoint.base_url == EMBEDDED and spec.endpoint.token is None
    assert own_threads() == threads
    assert embedded.embedded_server() is server
    assert not (fresh_usage / "usage").exists() and not (fresh_usage / "spool").exists()


def test_binding_starts_the_emulator_and_the_committer(spark, fresh_usage: Path) -> None:  # type: ignore[no-untyped-def]
    spec = bind(spark, analyze(spark, "databricks-gpt-5-4"))
    server = embedded.embedded_server()
    assert server is not None and spec.endpoint.base_url == server.url
    assert committer(spark).ever_started
    assert bind(spark, analyze(spark, "databricks-gpt-5")).endpoint.base_url == server.url

    # Nothing spooled; the flush makes sure the table exists (earlier tests in this session
    # may have made it already, at their location: the table is one per metastore).
    assert aiquery.flush_usage(spark) == 0
    assert spark.catalog.tableExists("ai_gateway.usage")
