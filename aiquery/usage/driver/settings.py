"""Where usage goes, read from the session on the driver. Reading settings starts nothing.

Settings (`aiquery.*` or `spark.aiquery.*` in the session's conf, else environment, else
default):
- `aiquery.usage.enabled` (true): record usage at all;
- `aiquery.usage.location` / `AIQUERY_USAGE_LOCATION`: the Delta table's directory,
  default `<warehouse>/ai_gateway.db/usage` (the warehouse URL as it is: s3a:// too);
- `aiquery.usage.delivery` (auto): how executors' records reach the driver: `spool`,
  each task appends to files in the spool directory itself (local masters, or a shared
  mount on a cluster); `driver`, each task sends them to the driver's coordinator, which
  appends them to its own local spool (clusters with object storage only). `auto` is
  `spool` on a local master or when a spool directory is given, else `driver`;
- `aiquery.usage.spoolDir` / `AIQUERY_USAGE_SPOOL`: the spool, default
  `<warehouse>/_aiquery_usage_spool` for a local warehouse, else (delivery `driver`)
  `~/.aiquery/usage-spool/<hash of the table's location>` on the driver;
- `aiquery.usage.requester`: the `requester` column, default the Spark user;
- `aiquery.usage.flushIntervalSeconds` (60): how often spooled records are committed
  while a job keeps running; they are also committed ~2 s after the spool goes quiet
  (each commit is a Delta MERGE, which costs a running job some CPU).

`require_delta` says what a classic session without Delta Lake is missing.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from aiquery.errors import ConfigError
from aiquery.settings import is_classic, is_local, setting, spark_user
from aiquery.usage.executor import UsageContext

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True, slots=True)
class UsageSettings:
    enabled: bool
    location: str  # the Delta table's directory
    spool_dir: str
    flush_interval_s: float
    delivery: str  # "spool" (executors write the spool) | "driver" (they send it to the driver)


DELIVERIES = ("auto", "spool", "driver")


def local_path(uri: str) -> Path | None:
    """The path of a local (or mounted) directory URL; None for object storage and HDFS."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri)
    return None


def usage_settings(spark: SparkSession) -> UsageSettings:
    conf = spark.conf
    enabled = (setting(conf, "usage.enabled") or "true").lower() != "false"
    warehouse = conf.get("spark.sql.warehouse.dir", None) or "spark-warehouse"
    local_warehouse = local_path(warehouse)
    # The table may live wherever the warehouse does (s3a://, abfss://, hdfs://: as it is).
    location = (
        setting(conf, "usage.location")
        or os.environ.get("AIQUERY_USAGE_LOCATION")
        or (
            str(local_warehouse / "ai_gateway.db" / "usage")
            if local_warehouse is not None
            else warehouse.rstrip("/") + "/ai_gateway.db/usage"
        )
    )
    spool = setting(conf, "usage.spoolDir") or os.environ.get("AIQUERY_USAGE_SPOOL")
    delivery = (setting(conf, "usage.delivery") or "auto").lower()
    if delivery not in DELIVERIES:
        raise ConfigError(
            f"aiquery.usage.delivery is {delivery!r}; use one of {', '.join(DELIVERIES)}"
        )
    if delivery == "auto":
        delivery = "spool" if spool is not None or is_local(spark) else "driver"
    if spool is None:
        if local_warehouse is not None:
            spool = str(local_warehouse / "_aiquery_usage_spool")
        elif delivery == "driver":
            # The driver's own disk, one spool per table: a restarted driver finds it again.
            digest = hashlib.sha256(location.encode()).hexdigest()[:16]
            spool = str(Path.home() / ".aiquery" / "usage-spool" / digest)
        elif enabled:
            raise ConfigError(
                f"The warehouse is {warehouse}, and with aiquery.usage.delivery=spool "
                "executors write usage to a directory that every executor and the driver "
                "can reach (a shared mount such as NFS): set aiquery.usage.spoolDir (or "
                "spark.aiquery.usage.spoolDir), or use aiquery.usage.delivery=driver; the "
                f"usage table goes to {location}. Or set aiquery.usage.enabled=false."
            )
        else:
            spool = "spark-warehouse/_aiquery_usage_spool"
    spool_path = local_path(spool)
    if spool_path is None:
        raise ConfigError(
            f"aiquery.usage.spoolDir is {spool!r}; the usage spool needs a local or mounted "
            "path, not object storage: on a cluster with object storage only, leave it unset "
            "(usage is then sent to the driver, aiquery.usage.delivery=driver)."
        )
    try:
        interval = float(setting(conf, "usage.flushIntervalSeconds") or 60)
    except ValueError:
        raise ConfigError("aiquery.usage.flushIntervalSeconds must be a number") from None
    return UsageSettings(enabled, location, str(spool_path.resolve()), interval, delivery)


def usage_context(spark: SparkSession) -> UsageContext | None:
    """The context for a new call site, or None when usage recording is off."""
    settings = usage_settings(spark)
    if not settings.enabled:
        return None
    return UsageContext(
        spool_dir=settings.spool_dir,
        delivery=settings.delivery,
        requester=setting(spark.conf, "usage.requester") or spark_user(spark),
        invocation_id=uuid.uuid4().hex,
        app_id=spark.conf.get("spark.app.id", None),
    )


DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"


def require_delta(spark: SparkSession) -> None:
    """Usage is committed to a Delta table: a classic session without Delta Lake is told
    how to add it before any request is sent, not by a failing background flush."""
    if not is_classic(spark):
        return  # a Connect server's Delta is the server's concern; its errors reach us
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    loadable = jvm.org.apache.spark.util.Utils.classIsLoadable(
        "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    )
    if loadable and DELTA_EXTENSION in (spark.conf.get("spark.sql.extensions", None) or ""):
        return
    raise ConfigError(
        "aiquery records every request in system.ai_gateway.usage, a Delta table, and this "
        "Spark session has no Delta Lake"
        + ("" if loadable else " on its class path")
        + ": start it with aiquery.spark.session.spark_session(), or give spark-submit the "
        "arguments `aiquery jvm --args` prints (Delta's package, extension and catalog); "
        "or set aiquery.usage.enabled=false to record nothing."
    )
