"""Settings are read as `aiquery.*` or `spark.aiquery.*`, and facts about the session without a
sparkContext (as a Spark Connect client must); the embedded default is refused on a cluster."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from aiquery.endpoints.registry import reset_configuration
from aiquery.errors import ConfigError
from aiquery.settings import is_classic, is_local, parallelism, setting
from aiquery.spark.callspec import analyze


@dataclass
class FakeConf:
    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)


@dataclass
class ConnectLikeSession:
    """What a Spark Connect client offers aiquery: a conf, no sparkContext, no JVM."""

    conf: FakeConf


def session(**values: str) -> ConnectLikeSession:
    return ConnectLikeSession(FakeConf(dict(values)))


def test_a_setting_is_read_from_either_spelling_and_aiquery_wins() -> None:
    conf = FakeConf({"spark.aiquery.requestTags": "spark-way"})
    assert setting(conf, "requestTags") == "spark-way"
    conf.values["aiquery.requestTags"] = "direct"
    assert setting(conf, "requestTags") == "direct"
    assert setting(conf, "usage.location") is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"spark.master": "local[3]"}, 3),
        ({"spark.master": "local"}, 1),
        ({"spark.master": "local[2,4]"}, 2),
        ({"spark.master": "spark://h:7077", "spark.default.parallelism": "12"}, 12),
        ({"spark.master": "spark://h:7077"}, 2),
    ],
)
def test_parallelism_without_a_spark_context(values: dict[str, str], expected: int) -> None:
    spark = session(**values)
    assert not is_classic(spark)  # type: ignore[arg-type]
    assert parallelism(spark) == expected  # type: ignore[arg-type]


def test_the_embedded_default_is_refused_at_analysis_on_a_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "AIQUERY_ENDPOINTS"):
        monkeypatch.delenv(var, raising=False)
    reset_configuration()
    spark = session(**{"spark.master": "spark://10.1.2.3:7077"})
    assert not is_local(spark)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as caught:
        analyze(spark, "databricks-gpt-5-4")  # type: ignore[arg-type]
    message = str(caught.value)
    assert "spark://10.1.2.3:7077" in message and "DATABRICKS_HOST" in message
    assert "aiquery serve --host" in message


def test_the_usage_table_follows_a_warehouse_on_object_storage() -> None:
    from aiquery.usage.driver.settings import usage_settings

    spark = session(
        **{
            "spark.sql.warehouse.dir": "s3a://lake/wh/",
            "spark.aiquery.usage.spoolDir": "/mnt/nfs/spool",
        }
    )
    settings = usage_settings(spark)  # type: ignore[arg-type]
    assert settings.location == "s3a://lake/wh/ai_gateway.db/usage"
    assert settings.spool_dir == "/mnt/nfs/spool"


def test_a_spool_on_object_storage_is_refused_with_the_fix() -> None:
    from aiquery.usage.driver.settings import usage_settings

    with pytest.raises(ConfigError, match=r"set aiquery.usage.spoolDir.*s3a://lake/wh/ai_gateway"):
        usage_settings(session(**{"spark.sql.warehouse.dir": "s3a://lake/wh"}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not object storage"):
        usage_settings(session(**{"aiquery.usage.spoolDir": "s3a://lake/spool"}))  # type: ignore[arg-type]
    off = session(**{"spark.sql.warehouse.dir": "s3a://lake/wh", "aiquery.usage.enabled": "false"})
    assert not usage_settings(off).enabled  # type: ignore[arg-type]
