"""`ai_query` as a real Spark SQL function: the JVM extension's Python side.

The extension (`aiquery/jvm/io/aiquery/spark/*.java`, compiled here from source with the
JDK's `javac` against PySpark's own jars, cached per source and Spark version) injects
`ai_query` into every session: `spark.sql`, the `spark-sql` shell, the Thrift server and
Spark Connect servers resolve it. Its JVM builder binds the arguments (positional, named,
or the older key/value form) and hands them to this module:

- `analyze` runs on the driver in a short-lived Python process (`python -m
  aiquery.spark.extension analyze`, JSON in and out): the same `callspec.analyze` as
  `aiquery.sql`, so the same checks and error classes, with the session's settings passed
  along; nothing is sent for a bad call. Its answer is the result type and the call spec.
- `udf_for` runs on executors: the Python UDF's command is a hand-written pickle of
  `udf_for(spec)`, and the function it returns is the one engine (`aiquery.spark.udf.run`).

    aiquery jvm            # builds the jar if needed; prints it and the Spark settings
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from aiquery.errors import AiQueryError, ConfigError
from aiquery.settings import is_classic

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from aiquery.spark.callspec import CallSpec

log = logging.getLogger("aiquery")

EXTENSION_CLASS = "io.aiquery.spark.AiQueryExtensions"
SYSTEM_CATALOG_CLASS = "io.aiquery.spark.SystemCatalog"
SOURCES = Path(__file__).resolve().parent.parent / "jvm"


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def extension_jar(cache: Path | None = None) -> Path:
    """The extension's jar, compiled from the package's Java sources on first use."""
    import pyspark

    sources = sorted(SOURCES.rglob("*.java"))
    digest = hashlib.sha256(pyspark.__version__.encode())
    for source in sources:
        digest.update(source.relative_to(SOURCES).as_posix().encode() + source.read_bytes())
    root = cache or Path(
        os.environ.get("AIQUERY_JVM_CACHE") or Path.home() / ".cache" / "aiquery" / "jvm"
    )
    jar = root / f"aiquery-spark-{digest.hexdigest()[:16]}.jar"
    if jar.is_file():
        return jar
    javac = shutil.which("javac", path=_java_path())
    if javac is None:
        raise ConfigError(
            "ai_query's Spark SQL extension is compiled from source with the JDK's javac, "
            "which is not on PATH (nor in $JAVA_HOME/bin): install a JDK 17+ (e.g. "
            "apt-get install openjdk-17-jdk-headless), or use aiquery.sql(spark, ...) without it."
        )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aiquery-jvm-") as work:
        classes = Path(work) / "classes"
        done = subprocess.run(
            [javac, "--release", "17", "-nowarn", "-cp", str(_spark_home() / "jars" / "*"),
             "-d", str(classes), *map(str, sources)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise ConfigError(f"javac could not compile ai_query's extension:\n{done.stderr}")
        partial = Path(work) / jar.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
            for path in sorted(classes.rglob("*.class")):
                archive.write(path, path.relative_to(classes).as_posix())
        os.replace(partial, jar)  # atomic: a concurrent build never sees half a jar
    return jar


def _java_path() -> str:
    home = os.environ.get("JAVA_HOME")
    path = os.environ.get("PATH", "")
    return f"{home}/bin{os.pathsep}{path}" if home else path


def spark_conf(existing_extensions: str | None = None) -> dict[str, str]:
    """The settings that enable the extension in a session started from Python.

    The jar goes on the driver's class path only: its classes analyse statements and never
    run on executors. (Through `spark.jars` it would also replace the list that
    `spark.jars.packages` resolved, and executors on a cluster would lose Delta's jars.)
    """
    extensions = [e for e in (existing_extensions or "").split(",") if e.strip()]
    if EXTENSION_CLASS not in extensions:
        extensions.append(EXTENSION_CLASS)
    return {
        "spark.driver.extraClassPath": str(extension_jar()),
        "spark.sql.extensions": ",".join(extensions),
        # system.ai_gateway.usage in plain Spark SQL, read-only (the same jar).
        "spark.sql.catalog.system": SYSTEM_CATALOG_CLASS,
    }


def is_enabled(spark: SparkSession) -> bool:
    """`ai_query` is the session's SQL function: its settings name the extension, and (on a
    classic driver) the JVM could load it; a JVM started before the settings (spark-submit
    without `--driver-class-path`) could not."""
    if EXTENSION_CLASS not in (spark.conf.get("spark.sql.extensions", None) or ""):
        return False
    if not is_classic(spark):
        return True
    from py4j.java_gateway import JavaClass  # type: ignore[import-untyped]

    jvm = spark.sparkContext._jvm
    return jvm is not None and isinstance(jvm.io.aiquery.spark.PythonAnalysis, JavaClass)


# --- analysis, on the driver (a process per new call; the JVM caches the answers) ---------


class _Conf:
    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self._values.get(key, default)


class _Session:
    """What analysis reads of a session, from the settings the JVM passed (no JVM here)."""

    def __init__(self, conf: Mapping[str, str]) -> None:
        self.conf = _Conf(conf)


def analyze(call: Mapping[str, Any]) -> dict[str, Any]:
    """{"ok", "type", "spec"} for a call the JVM bound, or {"ok": False, "message"}."""
    try:
        session: Any = _Session(call.get("conf") or {})
        spec = _analyze_call(session, call)
        if spec.usage is not None and spec.usage.delivery == "driver":
            raise ConfigError(
                "ai_query through the SQL extension records usage in a spool directory "
                "the executors write themselves: on this cluster set "
                "spark.aiquery.usage.spoolDir to a mount every executor and the driver share, "
                "or spark.aiquery.usage.enabled=false"
            )
    except AiQueryError as e:
        return {"ok": False, "message": str(e)}
    return _answer(spec)


def _analyze_call(session: Any, call: Mapping[str, Any]) -> CallSpec:
    """`callspec.analyze` of the arguments the JVM bound, and the request's type checked."""
    from aiquery.spark.callspec import analyze as analyze_call

    model_parameters = call.get("modelParameters")
    spec = analyze_call(
        session,
        str(call["endpoint"]),
        return_type=call.get("returnType"),
        fail_on_error=bool(call.get("failOnError", True)),
        model_parameters=json.loads(model_parameters) if model_parameters else None,
        response_format=call.get("responseFormat"),
    )
    _check_request(spec, call.get("requestType"))
    return spec


def _answer(spec: CallSpec) -> dict[str, Any]:
    """The JVM's answer for a call: its result type, and the spec executors unpickle."""
    blob = base64.b64encode(pickle.dumps(spec)).decode("ascii")
    return {"ok": True, "type": spec.result_type.json(), "spec": blob}


def _check_request(spec: CallSpec, type_json: str | None) -> None:
    """The request's SQL type, checked at analysis: STRING, or a STRUCT for custom models."""
    from pyspark.sql.types import StringType, StructType, _parse_datatype_json_string

    from aiquery.errors import InvalidArgumentError
    from aiquery.protocols.common import CUSTOM

    if type_json is None:
        return
    given = _parse_datatype_json_string(type_json)
    name = spec.endpoint.name
    if spec.endpoint.task == CUSTOM and not isinstance(given, StructType):
        raise InvalidArgumentError(
            f"Custom model endpoint '{name}' takes a STRUCT request whose fields are the "
            f"model's inputs, e.g. named_struct('feature_a', a, 'feature_b', b); got {given.simpleString()}."
        )
    if spec.endpoint.task != CUSTOM and not isinstance(given, StringType):
        raise InvalidArgumentError(
            f"Endpoint '{name}' takes a STRING request, not {given.simpleString()}; cast it or "
            "build the prompt with concat()."
        )


# --- analysis in the Python driver, when there is one --------------------------------------


class _DriverAnalyzer:
    """`io.aiquery.spark.Analyzer`, called by the JVM through Py4J's callback server."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def analyze(self, call_json: str) -> str:
        try:
            return json.dumps(analyze_in_driver(self.spark, json.loads(call_json)))
        except Exception as e:  # a bug, not a bad call: say so in the statement's error
            log.exception("aiquery: analysing an ai_query call failed")
            return json.dumps({"ok": False, "message": f"[AIQUERY_INTERNAL_ERROR] {e!r}"})

    class Java:
        implements: ClassVar[list[str]] = ["io.aiquery.spark.Analyzer"]


def install(spark: SparkSession) -> None:
    """Analyse this session's calls in this process (classic sessions with the extension)."""
    if not is_classic(spark) or not is_enabled(spark):
        return
    from pyspark.java_gateway import ensure_callback_server_started

    context = spark.sparkContext
    gateway = context._gateway
    assert gateway is not None and context._jvm is not None
    ensure_callback_server_started(gateway)  # type: ignore[no-untyped-call]
    context._jvm.io.aiquery.spark.PythonAnalysis.useDriver(_DriverAnalyzer(spark))


def analyze_in_driver(spark: SparkSession, call: Mapping[str, Any]) -> dict[str, Any]:
    """`analyze` with this driver's endpoints, then bound here (`runtime.bind`): the embedded
    emulator, the usage committer and coordinator, job-wide rate limits."""
    from aiquery.spark.runtime import bind

    try:
        bound = bind(spark, _analyze_call(spark, call))
    except AiQueryError as e:
        return {"ok": False, "message": str(e)}
    return _answer(bound)


# --- execution, on executors ------------------------------------------------------------


def udf_for(spec_blob: str) -> Callable[[Iterator[pa.Array]], Iterator[pa.Array]]:
    """The UDF body of one call site (unpickled by PySpark's worker from the JVM's command)."""
    from aiquery.spark.runtime import live_endpoint
    from aiquery.spark.udf import run

    spec: CallSpec = pickle.loads(base64.b64decode(spec_blob))

    def ai_query(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        # A built-in name in local mode: the embedded emulator of this worker process.
        bound = replace(spec, endpoint=live_endpoint(spec.endpoint))
        yield from run(bound, batches)

    return ai_query


def main(argv: list[str]) -> int:
    if argv[:1] == ["analyze"]:
        print(json.dumps(analyze(json.loads(sys.stdin.read()))))
        return 0
    print("usage: python -m aiquery.spark.extension analyze < call.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
