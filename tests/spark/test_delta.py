"""Delta Lake really works on the local SparkSession (jars resolved once from Maven Central)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chispa import assert_df_equality

pytestmark = pytest.mark.spark


def test_delta_table_round_trip_with_history(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "events")
    first = spark.createDataFrame([(1, "a"), (2, "b")], "id INT, text STRING")
    first.write.format("delta").save(path)
    spark.createDataFrame([(3, "c")], "id INT, text STRING").write.format("delta").mode(
        "append"
    ).save(path)

    current = spark.read.format("delta").load(path)
    expected = spark.createDataFrame([(1, "a"), (2, "b"), (3, "c")], "id INT, text STRING")
    assert_df_equality(current, expected, ignore_row_order=True)
    # Time travel proves this is a Delta log, not plain Parquet.
    version0 = spark.read.format("delta").option("versionAsOf", 0).load(path)
    assert_df_equality(version0, first, ignore_row_order=True)
    assert (Path(path) / "_delta_log" / "00000000000000000001.json").exists()


def test_delta_comes_from_the_cached_jars_not_a_resolution_per_start(spark) -> None:  # type: ignore[no-untyped-def]
    from aiquery.spark.session import delta_jars

    jars = spark.conf.get("spark.jars").split(",")
    assert [Path(j).name for j in jars if "delta" in j] == [
        j.name for j in delta_jars() if "delta" in j.name
    ]
    assert any("delta-spark_" in Path(j).name for j in jars)
    assert spark.conf.get("spark.jars.packages", None) in (None, "")


def test_managed_delta_table_in_the_session_catalog(spark) -> None:  # type: ignore[no-untyped-def]
    spark.sql("CREATE SCHEMA IF NOT EXISTS aiquery_test")
    spark.sql("CREATE OR REPLACE TABLE aiquery_test.t (id BIGINT, note STRING) USING DELTA")
    spark.sql("INSERT INTO aiquery_test.t VALUES (1, 'x'), (2, 'y')")
    spark.sql("UPDATE aiquery_test.t SET note = 'z' WHERE id = 2")
    rows = spark.sql("SELECT id, note FROM aiquery_test.t ORDER BY id").collect()
    assert [(r.id, r.note) for r in rows] == [(1, "x"), (2, "z")]
    detail = spark.sql("DESCRIBE DETAIL aiquery_test.t").collect()[0]
    assert detail.format == "delta"
