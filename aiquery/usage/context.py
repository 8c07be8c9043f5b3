"""Where usage goes, resolved on the driver, and the executor-side spool writer for a call.

Settings (Spark conf, else environment, else default):
- `aiquery.usage.enabled` (true): record usage at all;
- `aiquery.usage.location` / `AIQUERY_USAGE_LOCATION`: the Delta table's directory,
  default `<warehouse>/ai_gateway.db/usage`;
- `aiquery.usage.spoolDir` / `AIQUERY_USAGE_SPOOL`: the spool, default
  `<warehouse>/_aiquery_usage_spool`; on a cluster it must be storage every executor
  and the driver can reach (a shared mount);
- `aiquery.usage.requester`: the `requester` column, default the Spark user;
- `aiquery.usage.flushIntervalSeconds` (60): how often spooled records are committed
  while a job keeps running; they are also committed ~2 s after the spool goes quiet
  (each commit is a Delta MERGE, which costs a running job some CPU).
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from aiquery.errors import ConfigError
from aiquery.usage.spool import SpoolHeader, SpoolWriter

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from aiquery.client.wire import Wire
    from aiquery.endpoints import Endpoint
    from aiquery.usage.committer import UsageCommitter

_committers: dict[tuple[int, str], UsageCommitter] = {}
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class UsageContext:
    """What executors need to spool usage for one call site (picklable)."""

    spool_dir: str
    requester: str
    invocation_id: str
    app_id: str | None


def _local_path(uri: str, setting: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri)
    raise ConfigError(
        f"{setting} is {uri!r}; aiquery's usage spool needs a local or mounted path. "
        "Set aiquery.usage.spoolDir (and aiquery.usage.location) to a shared mount."
    )


def settings(spark: SparkSession) -> tuple[bool, str, str]:
    """(enabled, table location, spool directory) for this session."""
    conf = spark.conf
    enabled = (conf.get("aiquery.usage.enabled", None) or "true").lower() != "false"
    warehouse = conf.get("spark.sql.warehouse.dir", None) or "spark-warehouse"
    location = (
        conf.get("aiquery.usage.location", None)
        or os.environ.get("AIQUERY_USAGE_LOCATION")
        or str(_local_path(warehouse, "spark.sql.warehouse.dir") / "ai_gateway.db" / "usage")
    )
    spool = (
        conf.get("aiquery.usage.spoolDir", None)
        or os.environ.get("AIQUERY_USAGE_SPOOL")
        or str(_local_path(warehouse, "spark.sql.warehouse.dir") / "_aiquery_usage_spool")
    )
    return enabled, location, str(_local_path(spool, "aiquery.usage.spoolDir").resolve())


def committer(spark: SparkSession) -> UsageCommitter:
    """This session's committer (one per session and spool), started on first use."""
    from aiquery.usage.committer import UsageCommitter

    _, location, spool = settings(spark)
    key = (id(spark), spool)
    with _lock:
        found = _committers.get(key)
        if found is None:
            found = _committers[key] = UsageCommitter(spark, spool, location)
            interval = float(spark.conf.get("aiquery.usage.flushIntervalSeconds", None) or 60)
            found.start(interval)
        return found


def usage_context(spark: SparkSession) -> UsageContext | None:
    """The context for a new call site, or None when usage recording is off."""
    enabled, _, spool = settings(spark)
    if not enabled:
        return None
    committer(spark).ensure_table()
    requester = spark.conf.get("aiquery.usage.requester", None) or spark.sparkContext.sparkUser()
    return UsageContext(
        spool_dir=spool,
        requester=requester,
        invocation_id=uuid.uuid4().hex,
        app_id=spark.sparkContext.applicationId,
    )


def flush(spark: SparkSession) -> int:
    """Commit spooled usage now; returns the number of rows merged."""
    return committer(spark).flush()


def writer_for(
    context: UsageContext, endpoint: Endpoint, wire: Wire, tags: Mapping[str, str] | None
) -> SpoolWriter:
    """The spool writer of one task (executor side)."""
    from pyspark import TaskContext

    task = TaskContext.get()
    spark_task = (
        f"{task.stageId()}.{task.partitionId()}.{task.attemptNumber()}"
        if task is not None
        else None
    )
    external = endpoint.protocol != "databricks"
    header = SpoolHeader(
        endpoint_name=endpoint.name,
        endpoint_id=hashlib.sha256(f"{endpoint.name}|{endpoint.base_url}".encode()).hexdigest()[
            :16
        ],
        destination_type=endpoint.destination_type,
        destination_name=f"{endpoint.protocol}:{urlparse(endpoint.base_url).netloc}"
        if external
        else endpoint.model,
        destination_model=endpoint.model,
        requester=context.requester,
        api_type=wire.api_type,
        url=wire.url,
        user_agent=wire.headers.get("User-Agent", ""),
        request_tags=dict(tags) if tags else None,
        invocation_id=context.invocation_id,
        spark_app_id=context.app_id,
        spark_task=spark_task,
    )
    return SpoolWriter(context.spool_dir, header)
