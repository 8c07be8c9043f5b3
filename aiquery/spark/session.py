"""A SparkSession with Delta Lake, the way aiquery's CLI, notebooks and tests start one.

Delta's jars are resolved once, by Spark's own Maven resolver (Ivy) from Maven Central,
into aiquery's cache (`delta_jars`); every start after that puts the cached jars on
`spark.jars` (`--jars`), so a start neither contacts the network nor prints Ivy's
resolution report. Nothing is vendored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from aiquery.errors import ConfigError
from aiquery.spark.extension import cache_root, extension_jar, install, spark_conf, spark_home

log = logging.getLogger("aiquery")

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # As on Databricks: `CREATE TABLE t AS SELECT ...` without USING writes Delta.
    "spark.sql.sources.default": "delta",
}


def delta_package() -> str:
    """The Maven coordinates of the Delta Lake that pip installed, for this PySpark (what
    `configure_spark_with_delta_pip` asks Spark to resolve), for JVMs started outside Python."""
    from importlib.metadata import version

    import pyspark

    spark = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark}_2.13:{version('delta-spark')}"


def submit_args() -> list[str]:
    """`spark-submit` arguments for a JVM started outside Python (`spark-sql`, the Thrift
    and Connect servers, `spark-submit` jobs): Delta Lake, the extension and the `system`
    catalog, and Delta as the default table format, as in sessions aiquery starts.

    Delta's jars are on the driver's class path too, not only in `--packages`: the Thrift
    server opens each JDBC session with Hive's class loader, which sees the class path but
    not the jars `--packages` adds (delta-io/delta#1332), so a session could not load
    Delta's catalog. `--packages` still ships them to executors."""
    settings = {**DELTA_CONF, **spark_conf(DELTA_CONF["spark.sql.extensions"])}
    jars = [str(j) for j in delta_jars()]
    settings["spark.driver.extraClassPath"] = os.pathsep.join(
        [settings["spark.driver.extraClassPath"], *jars]
    )
    return [
        "--jars",
        ",".join(jars),
        *(arg for key, value in settings.items() for arg in ("--conf", f"{key}={value}")),
    ]


def delta_jars(cache: Path | None = None) -> list[Path]:
    """Delta Lake's jars for this PySpark that Spark does not ship itself, resolved once by
    Spark's own resolver (Maven Central) into aiquery's cache. Dependencies Spark has (an
    older Jackson, Parquet, Hadoop's client) are left out: on the class path they would
    shadow Spark's own versions."""
    package = delta_package()
    root = (cache or cache_root()) / f"ivy-{hashlib.sha256(package.encode()).hexdigest()[:12]}"
    jars = root / "jars"
    done = root / "resolved"
    if not done.is_file():
        # The one network contact: Ivy's own report stays in the captured output.
        log.warning("aiquery: downloading %s from Maven Central (first start only)", package)
        submit = spark_home() / "bin" / "spark-submit"
        resolved = subprocess.run(
            [str(submit), "--packages", package, "--conf", f"spark.jars.ivy={root}",
             "--class", "io.aiquery.spark.Resolve", str(extension_jar(cache))],
            capture_output=True, text=True,
        )  # fmt: skip
        if resolved.returncode != 0:
            raise ConfigError(
                f"Spark could not resolve {package} from Maven Central:\n{resolved.stderr[-2000:]}"
            )
        done.write_text(package + "\n")
    shipped = {_artifact(j.name) for j in (spark_home() / "jars").glob("*.jar")}
    found = sorted(
        j for j in jars.glob("*.jar") if _artifact(j.name.partition("_")[2]) not in shipped
    )
    log.debug("aiquery: Delta Lake's jars from %s: %s", jars, [j.name for j in found])
    return found


def _artifact(jar: str) -> str:
    """`jackson-core` of `jackson-core-2.18.2.jar`."""
    return re.sub(r"-\d[\w.\-]*\.jar$", "", jar)


def spark_session(
    app_name: str = "aiquery",
    *,
    master: str | None = None,
    remote: str | None = None,
    warehouse: str | Path | None = None,
    conf: dict[str, Any] | None = None,
) -> SparkSession:
    """Get or create a SparkSession with Delta Lake configured.

    `master` chooses where it runs; without it Spark's own choice stands (`spark-submit
    --master`, `MASTER`, spark-defaults.conf, `PYSPARK_SUBMIT_ARGS`), and `local[*]` when
    nothing chose. `remote` (`sc://host:port`, else `$SPARK_REMOTE` when no master is
    given) connects to a Spark Connect server instead, which brings its own Delta and
    warehouse; `conf` is then set on the session.
    `warehouse` is where managed tables (and, by default, the usage table) live; it
    defaults to `./spark-warehouse` as in plain Spark.
    """
    if remote is None and master is None:
        remote = os.environ.get("SPARK_REMOTE") or None
    if remote is not None:
        session = SparkSession.builder.remote(remote).appName(app_name).getOrCreate()
        for key, value in (conf or {}).items():
            session.conf.set(key, value)
        return session

    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    settings: dict[str, Any] = {
        **DELTA_CONF,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Delta's default of 50 partitions for reading a table's log is for clusters;
        # locally it made the first read of a small table take 17-35 s instead of seconds.
        "spark.databricks.delta.snapshotPartitions": "2",
    }
    if warehouse is not None:
        # A URL (s3a://, abfss://, hdfs://) as it is; a local path made absolute.
        settings["spark.sql.warehouse.dir"] = (
            str(warehouse) if "://" in str(warehouse) else str(Path(warehouse).resolve())
        )
    settings.update(conf or {})
    settings.update(_extension_conf(settings))
    # Delta's cached jars join any the caller gave; packages asked for (hadoop-aws for
    # s3a://, say) still go through Ivy, as Spark resolves them.
    settings.update(_delta_jars_conf(settings))
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    install(session)  # ai_query calls are analysed in this process, with its endpoints
    return session


def _delta_jars_conf(settings: dict[str, Any]) -> dict[str, str]:
    """Delta's cached jars on `spark.jars`, after any the caller gave. Without a JDK's javac
    (which the one-time resolution runs with), Spark's resolver on every start instead.

    In a `spark-submit`ted Python job the JVM already runs with the jars its command line
    gave (`--packages`, `--jars`, `$(aiquery jvm --args)`); setting `spark.jars` here would
    replace that list, and executors would lose them, so it is left as it is."""
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        return {}
    try:
        extension_jar()  # its Resolve class does the one-time resolution
    except ConfigError:  # warned about with the extension
        packages = [p for p in str(settings.get("spark.jars.packages", "")).split(",") if p]
        return {"spark.jars.packages": ",".join([*packages, delta_package()])}
    jars = [str(j) for j in delta_jars()]
    given = [j for j in str(settings.get("spark.jars", "")).split(",") if j.strip()]
    return {"spark.jars": ",".join([*given, *jars])}


def _extension_conf(settings: dict[str, Any]) -> dict[str, str]:
    """`ai_query` as a SQL function of the session (`aiquery.spark.extension`), its jar
    on the driver's class path; without a JDK's javac, a warning and no extension."""
    try:
        extra = spark_conf(settings.get("spark.sql.extensions"))
    except ConfigError as e:
        log.warning("aiquery: %s", e)
        return {}
    given = settings.get("spark.driver.extraClassPath")
    if given:
        extra["spark.driver.extraClassPath"] = (
            f"{given}{os.pathsep}{extra['spark.driver.extraClassPath']}"
        )
    return extra
