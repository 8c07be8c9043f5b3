"""The Python driver of a JVM that has none (`python -m aiquery.spark.companion`).

The `spark-sql` shell, the Thrift JDBC server and Spark Connect servers are JVMs with no
Python driver, yet `ai_query`'s driver side is Python: endpoint resolution, the embedded
emulator, the usage committer, the coordinator. On its first `ai_query` call such a JVM
(`io.aiquery.spark.PythonCompanion`) opens a Py4J gateway on loopback and starts this
process, which attaches to the JVM's own SparkContext as PySpark's driver would and
analyses every call from then on (`extension.analyze_in_driver`), so these entry points
run exactly what a PySpark application runs.

Each call carries its SQL session's `aiquery.*` settings (a Thrift client may `SET
aiquery.requestTags=...`): calls are analysed in a session of this companion with those
settings, one per distinct set, so usage is committed per usage table as configured. A
server lives for months and its clients may tag every query differently, so only the
`MAX_SESSIONS` most recently used sets keep a session; an older one is let go after its
usage committer's last flush (spooled lines of its queries still running are committed by
the next flush of any session on the same usage table, or at exit).

The process ends when its stdin closes: the JVM closes it at exit, before the shell or
server stops its SparkContext, and the companion then does what a Python driver does at
exit (the coordinator's files closed, the last usage flush). A JVM that dies without its
hooks also closes the pipe; the spool then stays for the next driver to commit.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping

from pyspark.sql import SparkSession

from aiquery.spark.extension import DriverAnalyzer
from aiquery.usage.driver.committer import retire

_SETTINGS_PREFIXES = ("aiquery.", "spark.aiquery.")
MAX_SESSIONS = 32


class Sessions:
    """The companion's sessions, one per distinct set of `aiquery.*` settings a calling
    session had, so calls are analysed and bound with their own session's settings."""

    def __init__(self, spark: SparkSession, limit: int = MAX_SESSIONS) -> None:
        self.spark = spark
        self.limit = limit
        self._sessions: OrderedDict[tuple[tuple[str, str], ...], SparkSession] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, conf: Mapping[str, str]) -> SparkSession:
        key = tuple(sorted((k, v) for k, v in conf.items() if k.startswith(_SETTINGS_PREFIXES)))
        with self._lock:
            found = self._sessions.get(key)
            if found is not None:
                self._sessions.move_to_end(key)
                return found
            found = self._sessions[key] = self.spark.newSession()
            for name, value in key:
                found.conf.set(name, value)
            while len(self._sessions) > self.limit:
                _, oldest = self._sessions.popitem(last=False)
                # Its committer's last flush runs a MERGE: not on the analysing thread.
                threading.Thread(
                    target=retire, args=(oldest,), name="aiquery-retire", daemon=True
                ).start()
            return found


def attach() -> SparkSession:
    """A PySpark session over the JVM that started this process (its gateway in the env)."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        raise SystemExit(
            "aiquery.spark.companion is started by ai_query's Spark SQL extension, with the "
            "JVM's gateway in PYSPARK_GATEWAY_PORT and PYSPARK_GATEWAY_SECRET; it is not run "
            "by hand."
        )
    gateway = launch_gateway()  # type: ignore[no-untyped-call]
    jvm = gateway.jvm
    context = jvm.org.apache.spark.SparkContext.getOrCreate()
    java_context = jvm.org.apache.spark.api.java.JavaSparkContext(context)
    sc = SparkContext(
        conf=SparkConf(_jconf=java_context.getConf()), gateway=gateway, jsc=java_context
    )
    # A session of its own: the committer's statements never see a user's `USE` or `SET`.
    root = jvm.org.apache.spark.sql.classic.SparkSession.active()
    return SparkSession(sc, jsparkSession=root.newSession())


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="aiquery: %(message)s")
    spark = attach()
    from pyspark.java_gateway import ensure_callback_server_started

    from aiquery.spark.runtime import shutdown

    gateway = spark.sparkContext._gateway
    jvm = spark.sparkContext._jvm
    assert gateway is not None and jvm is not None
    ensure_callback_server_started(gateway)  # type: ignore[no-untyped-call]
    jvm.io.aiquery.spark.PythonAnalysis.useDriver(DriverAnalyzer(Sessions(spark)))
    sys.stdin.read()  # until the JVM closes the pipe: at its exit, or when it dies
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
