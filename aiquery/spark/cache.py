"""The response cache, driver side: its settings, and the slice a call site reads.

`aiquery.cache.enabled = true` turns it on for the session (a `SET` before a statement
turns it on for that statement); `aiquery.cache.maxAge` (default 30d; 7d, 12h, 30m, or
seconds) is how old an answer may be. Answers are written by every task as they arrive
(`aiquery.client.cache`). Binding a call site with the cache on commits what is spooled
(a failed run's answers too), reads the endpoint's answers younger than the maximum age
from the cache table, and hands them to the coordinator, which answers the tasks'
lookups. The driver holds that slice while the query runs: about the answers' size.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from aiquery.client.cache import CacheSettings
from aiquery.client.engine import EngineSettings
from aiquery.endpoints.registry import Endpoint
from aiquery.errors import ConfigError
from aiquery.settings import is_classic, setting
from aiquery.usage.driver.committer import flush as flush_usage
from aiquery.usage.driver.settings import usage_settings
from aiquery.usage.record import cache_table_location

DEFAULT_MAX_AGE_S = 30 * 86400.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def cache_enabled(spark: SparkSession) -> bool:
    value = (setting(spark.conf, "cache.enabled") or "false").strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(f"aiquery.cache.enabled is {value!r}; use true or false")
    if value == "true" and not usage_settings(spark).enabled:
        raise ConfigError(
            "aiquery.cache.enabled needs usage recording (the cache's answers travel with the "
            "usage records): unset aiquery.usage.enabled=false, or turn the cache off"
        )
    return value == "true"


def max_age_s(spark: SparkSession) -> float:
    given = (setting(spark.conf, "cache.maxAge") or "").strip().lower()
    if not given:
        return DEFAULT_MAX_AGE_S
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", given)
    if found is None or float(found[1]) <= 0:
        raise ConfigError(
            f"aiquery.cache.maxAge is {given!r}; use a span such as 30d, 12h, 30m or 3600 (seconds)"
        )
    return float(found[1]) * _UNITS[found[2] or "s"]


def bind_cache(spark: SparkSession, settings: EngineSettings, endpoint: Endpoint) -> EngineSettings:
    """`settings` with a slice of the cache for `endpoint`, loaded now and served by this
    process's coordinator (`settings` are bound to it already)."""
    from aiquery.spark.coordinator import CACHES

    oldest = max_age_s(spark)
    location = usage_settings(spark).location
    slice_id = uuid.uuid4().hex
    CACHES.register(slice_id, lambda: _load(spark, location, endpoint.name, oldest))
    return replace(settings, cache=CacheSettings(slice_id))


def _load(spark: SparkSession, location: str, endpoint: str, oldest: float) -> dict[str, str]:
    """The endpoint's answers younger than `oldest` seconds, by key."""
    if is_classic(spark):  # maybe from another thread (a reload): Delta looks the session up
        jvm = spark.sparkContext._jvm
        if jvm is not None:
            jvm.org.apache.spark.sql.SparkSession.setActiveSession(spark._jsparkSession)
    flush_usage(spark)  # answers still spooled (a run that failed half way) count
    since = datetime.now(UTC) - timedelta(seconds=oldest)
    try:
        table = (
            spark.read.format("delta")
            .load(cache_table_location(location))
            .where((F.col("endpoint_name") == endpoint) & (F.col("created_at") >= F.lit(since)))
            .select("key", "answer")
            .toArrow()
        )
    except AnalysisException as e:
        if "PATH_NOT_FOUND" in str(e) or "is not a Delta table" in str(e):
            return {}  # nothing cached yet
        raise
    return dict(
        zip(table.column("key").to_pylist(), table.column("answer").to_pylist(), strict=True)
    )
