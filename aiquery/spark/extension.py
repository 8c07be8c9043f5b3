"""`ai_query` as a real Spark SQL function: the JVM extension's Python side.

The extension (`aiquery/jvm/io/aiquery/spark/*.java`, compiled here from source with the
JDK's `javac` against PySpark's own jars, cached per source and Spark version) injects
`ai_query` into every session: `spark.sql`, the `spark-sql` shell, the Thrift server and
Spark Connect servers resolve it. Its JVM builder binds the arguments (positional, named,
or the older key/value form) and hands them to this module:

- analysis runs in the driver's Python (`analyze_in_driver`): the same `callspec.analyze`
  as the DataFrame API, so the same checks and error classes; nothing is sent for a bad
  call. The application's own Python driver answers when it installed itself (`install`);
  a JVM with none (`spark-sql`, the Thrift and Connect servers) starts a Python companion
  attached to it (`aiquery.spark.companion`). The answer is the result type and the call
  spec, bound as in any driver: emulator, usage committer, coordinator.
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


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def extension_jar(cache: Path | None = None) -> Path:
    """The extension's jar, compiled from the package's Java sources on first use."""
    import pyspark

    sources = sorted(SOURCES.rglob("*.java"))
    digest = hashlib.sha256(pyspark.__version__.encode())
    for source in sources:
        digest.update(source.relative_to(SOURCES).as_posix().encode() + source.read_bytes())
    root = cache or cache_root()
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
            [javac, "--release", "17", "-nowarn", "-cp", str(spark_home() / "jars" / "*"),
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


def cache_root() -> Path:
    return Path(os.environ.get("AIQUERY_JVM_CACHE") or Path.home() / ".cache" / "aiquery" / "jvm")


def _java_path() -> str:
    home = os.environ.get("JAVA_HOME")
    path = os.environ.get("PATH", "")
    return f"{home}/bin{os.pathsep}{path}" if home else path


def spark_conf(existing_extensions: str | None = None) -> dict[str, str]:
    """The settings that enable the extension in a session started from Python.

    The jar goes on the driver's class path only: its classes analyse statements and never
    run on executors, so it is not shipped to them with `spark.jars`.
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


# --- analysis, in the driver's Python ----------------------------------------------------


def _analyze_call(session: Any, call: Mapping[str, Any]) -> tuple[CallSpec, list[int]]:
    """The call's spec and its UDF's inputs (indices of the JVM's arguments).

    ai_query's arguments arrive bound by the JVM (its signature is Spark's named-argument
    support): `callspec.analyze`, and the request's (and files') types checked. An AI
    function's arrive as given, and `aifunctions.analyze_function` binds them."""
    from pyspark.sql.types import _parse_datatype_json_string

    from aiquery.spark.aifunctions import Arg, analyze_function
    from aiquery.spark.callspec import analyze as analyze_call

    if "function" in call:
        args = [
            Arg(
                name=a.get("name"),
                type=_parse_datatype_json_string(a["type"]) if a.get("type") else None,
                constant=bool(a.get("constant")),
                value=a.get("value"),
            )
            for a in call["args"]
        ]
        return analyze_function(session, str(call["function"]), args)
    model_parameters = call.get("modelParameters")
    spec = analyze_call(
        session,
        str(call["endpoint"]),
        return_type=call.get("returnType"),
        fail_on_error=bool(call.get("failOnError", True)),
        model_parameters=json.loads(model_parameters) if model_parameters else None,
        response_format=call.get("responseFormat"),
        files="filesType" in call,
    )
    _check_request(spec, call.get("requestType"), call.get("filesType"))
    return spec, list(range(len(spec.inputs)))


def _answer(spec: CallSpec, inputs: list[int] | None = None) -> dict[str, Any]:
    """The JVM's answer for a call: its result type, the spec executors unpickle, the
    arguments the UDF takes, whether Spark parses its JSON text as a VARIANT, and the type
    the worker returns when that is not the result type (embeddings travel packed: the JVM
    unpacks them, `aiquery.spark.vectors`)."""
    from aiquery.protocols.common import EMBEDDINGS
    from aiquery.spark import vectors

    if inputs is not None and spec.endpoint.task == EMBEDDINGS:  # the extension unpacks
        spec = replace(spec, packed=vectors.packed_type(spec.result_type) is not None)
    blob = base64.b64encode(pickle.dumps(spec)).decode("ascii")
    answer: dict[str, Any] = {"ok": True, "type": spec.result_type.json(), "spec": blob}
    if inputs is not None:
        answer.update(inputs=inputs, variant=spec.variant)
        if spec.packed:
            answer.update(workerType=spec.worker_type.json())
    return answer


def _check_request(spec: CallSpec, type_json: str | None, files_json: str | None) -> None:
    """The request's SQL type, checked at analysis: STRING, or a STRUCT for custom models;
    the files' BINARY."""
    from pyspark.sql.types import BinaryType, StringType, StructType, _parse_datatype_json_string

    from aiquery.errors import InvalidArgumentError
    from aiquery.protocols.common import CUSTOM

    if files_json is not None and not isinstance(
        files := _parse_datatype_json_string(files_json), BinaryType
    ):
        raise InvalidArgumentError(
            f"ai_query's files must be a BINARY column of images (e.g. the content column of "
            f"read_files(..., format => 'binaryFile')), not {files.simpleString()}."
        )
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


class DriverAnalyzer:
    """`io.aiquery.spark.Analyzer`, called by the JVM through Py4J's callback server: calls
    are analysed and bound in this process. `session_for` gives the session to use for a
    calling session's `aiquery.*` settings: a PySpark application's own session, or one of
    the companion's (`aiquery.spark.companion`)."""

    def __init__(self, session_for: Callable[[Mapping[str, str]], SparkSession]) -> None:
        self.session_for = session_for

    def analyze(self, call_json: str) -> str:
        return self._answer(analyze_in_driver, call_json)

    def bind(self, call_json: str) -> str:
        return self._answer(bind_in_driver, call_json)

    def flush(self) -> None:
        from aiquery.usage.driver.committer import flush_all

        flush_all()

    def _answer(
        self, step: Callable[[SparkSession, Mapping[str, Any]], dict[str, Any]], call_json: str
    ) -> str:
        """The JVM's JSON answer for one step (analysis or binding) of a call."""
        try:
            call = json.loads(call_json)
            return json.dumps(step(self.session_for(call.get("conf") or {}), call))
        except Exception as e:  # a bug, not a bad call: say so in the statement's error
            log.exception("aiquery: %s of an ai_query call failed", step.__name__)
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
    context._jvm.io.aiquery.spark.PythonAnalysis.useDriver(DriverAnalyzer(lambda _: spark))


def analyze_in_driver(spark: SparkSession, call: Mapping[str, Any]) -> dict[str, Any]:
    """The JVM's call analysed with this driver's endpoints: its result type and its spec,
    unbound. Analysis starts nothing; `bind_in_driver` does, when the statement runs."""
    try:
        return _answer(*_analyze_call(spark, call))
    except AiQueryError as e:
        return {"ok": False, "message": str(e)}


def bind_in_driver(spark: SparkSession, call: Mapping[str, Any]) -> dict[str, Any]:
    """An analysed spec bound here for execution (`runtime.bind`): the embedded emulator,
    the usage committer and coordinator, job-wide rate limits.

    Request tags, engine and usage settings are the running session's (`spark` carries its
    settings): a view's or SQL function's body is analysed under the configuration captured
    when it was created, but whoever runs the statement owns its tags and its usage."""
    from aiquery.spark.callspec import call_settings, call_tags
    from aiquery.spark.runtime import bind
    from aiquery.usage.driver.settings import usage_context

    try:
        spec: CallSpec = pickle.loads(base64.b64decode(call["spec"]))
        spec = replace(
            spec,
            request_tags=call_tags(spark, None, spec.task),
            settings=call_settings(spark, spec.endpoint, spec.params),
            usage=usage_context(spark),
        )
        return _answer(bind(spark, spec))
    except AiQueryError as e:
        return {"ok": False, "message": str(e)}


# --- execution, on executors ------------------------------------------------------------


def udf_for(spec_blob: str) -> Callable[[Iterator[pa.Array]], Iterator[pa.Array]]:
    """The UDF body of one call site (unpickled by PySpark's worker from the JVM's command)."""
    from aiquery.spark.udf import run

    spec: CallSpec = pickle.loads(base64.b64decode(spec_blob))  # bound by the driver

    def ai_query(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        yield from run(spec, batches)

    return ai_query
