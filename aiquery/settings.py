"""What aiquery reads from a Spark session, the same way for a classic driver and a Spark
Connect client (which has no `sparkContext` and no JVM).

Settings are `aiquery.<name>`, else `spark.aiquery.<name>`: the second spelling survives
`spark-submit --conf` and `spark-defaults.conf`, which drop keys that do not start with
`spark.` ("Ignoring non-Spark config property"). Both work in `SET`, `spark.conf.set` and
the CLI's `--conf`; where both are set, `aiquery.<name>` wins.
"""

from __future__ import annotations

import getpass
import os
import re
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class Conf(Protocol):
    """A session's runtime configuration (`spark.conf`, classic or Spark Connect)."""

    def get(self, key: str, default: str | None = None) -> str | None: ...


def setting(conf: Conf, name: str) -> str | None:
    """The value of `aiquery.<name>` (or `spark.aiquery.<name>`), None when neither is set."""
    value = conf.get(f"aiquery.{name}", None)
    if value is None:
        value = conf.get(f"spark.aiquery.{name}", None)
    return value


def is_classic(spark: SparkSession) -> bool:
    """A classic session in this process (it has a JVM), not a Spark Connect client."""
    return getattr(spark, "_jsparkSession", None) is not None


def master(spark: SparkSession) -> str:
    """The session's master URL (the server's, under Spark Connect)."""
    return spark.conf.get("spark.master", None) or "local[*]"


def is_local(spark: SparkSession) -> bool:
    """Executors run in the driver's process, so they reach its loopback addresses."""
    return master(spark).startswith("local")


def parallelism(spark: SparkSession) -> int:
    """How many tasks run at once: Spark's default parallelism, else what the master implies."""
    if is_classic(spark):
        return max(1, int(spark.sparkContext.defaultParallelism))
    configured = spark.conf.get("spark.default.parallelism", None)
    if configured and configured.isdigit():
        return max(1, int(configured))
    if master(spark) == "local":
        return 1
    local = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", master(spark))
    if local:
        return int(local[1]) if local[1] != "*" else os.cpu_count() or 1
    return 2  # Spark's own floor for a cluster's default parallelism


def spark_user(spark: SparkSession) -> str:
    """Who runs the session: Spark's user on a classic driver, else the OS user."""
    if is_classic(spark):
        user: str = spark.sparkContext.sparkUser()
        return user
    return os.environ.get("SPARK_USER") or getpass.getuser()
