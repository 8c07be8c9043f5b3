"""`aiquery.sql`: Spark SQL with Databricks' `ai_query`, its AI functions and `system.ai_gateway.usage`.

In a session with ai_query's SQL extension (every session aiquery starts, and servers
started with `aiquery jvm --args`), `ai_query` is Spark's own function and
`system.ai_gateway.usage` its `system` catalog's table: the statement goes to `spark.sql`
unchanged, after a usage flush when it reads the usage table. That is the one path.

Where the extension cannot reach (a session started without it, e.g. a Spark Connect
server without its settings, or a machine with no JDK compiler), the text is rewritten
instead. Spark's Python UDFs have one fixed result type and refuse named arguments, while
`ai_query`'s result type depends on its endpoint and arguments. So each call site is
analysed on the driver and replaced, by position in the original text, with a call to a
UDF registered for exactly that site; every other byte of the statement reaches Spark
unchanged. The AI functions (`ai_classify`, ...) are rewritten the same way; an argument
Spark can evaluate alone is a constant. A statement without them is passed through untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pyarrow as pa
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql.types import StringType

from aiquery.client.engine import EngineSettings
from aiquery.endpoints.registry import EMBEDDED, Registry, load_registry
from aiquery.errors import (
    AiQueryError,
    ConfigError,
    InvalidArgumentError,
    InvalidModelParametersError,
)
from aiquery.protocols.common import CHAT, EMBEDDINGS
from aiquery.protocols.tasks import FUNCTIONS
from aiquery.settings import master
from aiquery.spark import extension, sqllex, sqlscan
from aiquery.spark.aifunctions import Arg, analyze_function
from aiquery.spark.callspec import (
    CallSpec,
    analyze,
    budget_limits,
    deduplicates,
    default_settings,
    embedded_unreachable,
    session_request_tags,
)
from aiquery.spark.runtime import bind_endpoints, bind_limits, bind_usage
from aiquery.spark.udf import arrow_iter_udf, make_udf, run
from aiquery.usage.driver.committer import flush as flush_usage
from aiquery.usage.driver.settings import usage_context
from aiquery.usage.executor import UsageContext
from aiquery.usage.record import SYSTEM_TABLE, TABLE

FUNCTION = "ai_query"
POSITIONAL = ("endpoint", "request", "returnType", "failOnError")
NAMED = {n.lower(): n for n in (*POSITIONAL, "modelParameters", "responseFormat", "files")}


def sql(spark: SparkSession, statement: str, registry: Registry | None = None) -> DataFrame:
    """`spark.sql` that also understands Databricks' full `ai_query` syntax and reads
    `system.ai_gateway.usage` (the usage table, flushed first so it is current).

    `registry` (endpoints other than the driver's own) needs the rewriting path."""
    if registry is None and extension.is_enabled(spark):
        usage_refs = sqlscan.find_identifier_path(statement, SYSTEM_TABLE)
        if usage_refs:
            flush_usage(spark)  # what this process spooled (the DataFrame API's calls too)
            if spark.conf.get("spark.sql.catalog.system", None) is None:
                statement = sqlscan.replace_spans(statement, [(a, b, TABLE) for a, b in usage_refs])
        return spark.sql(statement)
    return spark.sql(rewrite(spark, statement, registry))


def rewrite(spark: SparkSession, statement: str, registry: Registry | None = None) -> str:
    """The statement with each ai_query call site replaced by its registered UDF and
    `system.ai_gateway.usage` by the session's usage table; nothing else changes.

    Every call site (nested ones too) is analysed before any is bound for execution, so a
    statement with a bad argument anywhere starts nothing."""
    plan = _plan(spark, statement, registry)
    if plan.reads_usage:
        flush_usage(spark)
    return _render(spark, plan)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A text's usage-table references and call sites, each with its analysis."""

    text: str
    usage_refs: list[tuple[int, int]]
    # Each site, its spec, and the plans of the texts its UDF takes (the request, ...).
    calls: list[tuple[sqlscan.CallSite, CallSpec, list[_Plan]]]

    @property
    def reads_usage(self) -> bool:
        return bool(self.usage_refs) or any(
            plan.reads_usage for _, _, inputs in self.calls for plan in inputs
        )


def _plan(spark: SparkSession, text: str, registry: Registry | None) -> _Plan:
    calls = sqlscan.find_calls(text, [FUNCTION, *FUNCTIONS])
    inside = [(c.start, c.end) for c in calls]
    usage_refs = [
        (start, end)
        for start, end in sqlscan.find_identifier_path(text, SYSTEM_TABLE)
        if not any(a <= start < b for a, b in inside)  # rewritten along with their call
    ]
    if calls and registry is None:
        registry = load_registry()
    analysed = []
    for call in calls:
        assert registry is not None
        if call.name.lower() == FUNCTION:
            spec, inputs = _analyze_call(spark, text, call, registry)
        else:
            spec, inputs = _analyze_function(spark, call, registry)
        # Calls inside the inputs (ai_query in a prompt) are planned too.
        analysed.append((call, spec, [_plan(spark, i, registry) for i in inputs]))
    return _Plan(text, usage_refs, analysed)


def _render(spark: SparkSession, plan: _Plan) -> str:
    if not plan.calls and not plan.usage_refs:
        return plan.text
    replacements = [(start, end, TABLE) for start, end in plan.usage_refs]
    for call, spec, inputs in plan.calls:
        udf = make_udf(spark, spec)
        name = f"_aiquery_{spec.fingerprint()}"
        spark.udf.register(name, udf)
        rendered = f"{name}({', '.join(_render(spark, i) for i in inputs)})"
        replacements.append(
            (call.start, call.end, f"parse_json({rendered})" if spec.variant else rendered)
        )
    return sqlscan.replace_spans(plan.text, replacements)


def _analyze_function(
    spark: SparkSession, call: sqlscan.CallSite, registry: Registry
) -> tuple[CallSpec, list[str]]:
    """An AI function's spec and the texts of its UDF's inputs. Each argument that Spark
    can evaluate alone is a constant (labels, options, a literal text); the others are
    expressions over the statement's columns."""
    args = [
        Arg(name=a.name, constant=constant, value=value)
        for a in call.args
        for constant, value in [_constant_value(spark, a.text)]
    ]
    spec, inputs = analyze_function(spark, call.name, args, registry=registry)
    return spec, [call.args[i].text for i in inputs]


def _constant_value(spark: SparkSession, text: str) -> tuple[bool, Any]:
    literal = sqllex.string_literal(text)
    if literal is not None:
        return True, literal
    try:
        value = spark.sql(f"SELECT {text} AS v").collect()[0]["v"]
    except AnalysisException:
        return False, None  # refers to columns
    return True, _plain(value.asDict(recursive=True) if isinstance(value, Row) else value)


def _analyze_call(
    spark: SparkSession, statement: str, call: sqlscan.CallSite, registry: Registry
) -> tuple[CallSpec, list[str]]:
    """The call site's spec and its inputs' texts (the request, and the files)."""
    args = _bind(statement, call)
    line, column = sqllex.position(statement, call.start)
    where = f"ai_query at line {line}, column {column}"
    endpoint = sqllex.string_literal(args["endpoint"])
    if endpoint is None:
        raise InvalidArgumentError(
            f"{where}: the endpoint must be a constant string such as 'databricks-gpt-5-4', "
            f"not the expression {args['endpoint'][:60]}."
        )
    spec = analyze(
        spark,
        endpoint,
        return_type=_string_arg(args, "returnType", where),
        fail_on_error=_bool_arg(args, "failOnError", where),
        model_parameters=_constant_struct(spark, args.get("modelParameters"), where),
        response_format=_string_arg(args, "responseFormat", where),
        registry=registry,
        files="files" in args,
    )
    return spec, [args["request"], *([args["files"]] if "files" in args else [])]


def _bind(statement: str, call: sqlscan.CallSite) -> dict[str, str]:
    """Argument texts by canonical name; positional first, then `name => value`."""
    line, column = sqllex.position(statement, call.start)
    where = f"ai_query at line {line}, column {column}"
    bound: dict[str, str] = {}
    seen_named = False
    for i, arg in enumerate(call.args):
        if arg.name is None:
            if seen_named:
                raise InvalidArgumentError(f"{where}: a positional argument follows a named one.")
            if i >= len(POSITIONAL):
                raise InvalidArgumentError(
                    f"{where}: at most {len(POSITIONAL)} positional arguments "
                    f"({', '.join(POSITIONAL)}); pass the others by name."
                )
            name = POSITIONAL[i]
        else:
            seen_named = True
            canonical = NAMED.get(arg.name.lower())
            if canonical is None:
                raise InvalidArgumentError(
                    f"{where}: ai_query has no parameter named "
                    f"'{arg.name}'. Valid: {', '.join(NAMED.values())}.",
                    error_class="UNRECOGNIZED_PARAMETER_NAME",
                )
            name = canonical
        if name in bound:
            raise InvalidArgumentError(f"{where}: the argument {name} is given twice.")
        bound[name] = arg.text
    for required in ("endpoint", "request"):
        if required not in bound:
            raise InvalidArgumentError(f"{where}: the {required} argument is required.")
    return bound


def _string_arg(args: Mapping[str, str], name: str, where: str) -> str | None:
    if name not in args:
        return None
    value = sqllex.string_literal(args[name])
    if value is None:
        raise InvalidArgumentError(f"{where}: {name} must be a constant string.")
    return value


def _bool_arg(args: Mapping[str, str], name: str, where: str) -> bool:
    if name not in args:
        return True
    value = sqllex.bool_literal(args[name])
    if value is None:
        raise InvalidArgumentError(f"{where}: {name} must be true or false.")
    return value


def _constant_struct(spark: SparkSession, text: str | None, where: str) -> dict[str, Any] | None:
    """Evaluate `modelParameters => named_struct(...)` on the driver; it must be a constant."""
    if text is None:
        return None
    try:
        value = spark.sql(f"SELECT {text} AS p").collect()[0]["p"]
    except AnalysisException:
        value = None
    if not isinstance(value, Row):
        raise InvalidModelParametersError(
            "NOT_A_CONSTANT_STRUCT",
            f"{where}: modelParameters must be a constant struct, e.g. "
            "named_struct('max_tokens', 256, 'temperature', 0.0).",
        )
    return {k: _plain(v) for k, v in value.asDict(recursive=True).items()}


def _plain(value: Any) -> Any:
    """SQL literals arrive typed: `0.7` is a DECIMAL; endpoints want JSON numbers."""
    if isinstance(value, Decimal):
        return (
            int(value)
            if value == value.to_integral_value() and value.as_tuple().exponent == 0
            else float(value)
        )
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def register(spark: SparkSession) -> None:
    """Make `ai_query` callable from plain `spark.sql`.

    With the SQL extension (sessions from `aiquery.spark.session.spark_session`, or
    `spark.sql.extensions` naming it), `ai_query` already is a function of the session
    with the whole syntax; this then only starts committing its usage. Without it, a UDF
    for the 2-argument form (STRING results); the full syntax then needs
    `aiquery.sql(spark, text)`, which rewrites each call site.
    """
    if extension.is_enabled(spark):
        # ai_query is the session's own SQL function, with the whole syntax, analysed
        # and bound in this process (which commits its usage).
        extension.install(spark)
        return
    registry = load_registry()
    usage = bind_usage(spark, usage_context(spark))
    # Chat only, and no modelParameters: the session's dedup setting decides alone. This
    # UDF serves every query of the session, so it cannot hold one query's budget.
    if budget_limits(spark) is not None:
        raise ConfigError(
            "aiquery.budget.* limits one query, and plain spark.sql's ai_query without the "
            "SQL extension serves the whole session: run the query with aiquery.sql(spark, "
            "...), or start the session with the extension (aiquery.spark.session.spark_session)"
        )
    settings = replace(default_settings(spark), deduplicate=deduplicates(spark, CHAT, {}))
    settings = bind_limits(spark, settings, registry.endpoints.values(), usage)
    tags = session_request_tags(spark, None)  # the session's, as set when registering
    # The UDF resolves the endpoint per query, so every endpoint is bound now.
    live = Registry(bind_endpoints(spark, registry.endpoints))
    where = master(spark)

    def ai_query(batches: Iterator[tuple[pa.Array, pa.Array]]) -> Iterator[pa.Array]:
        yield from _run_two_arg(live, settings, usage, tags, where, batches)

    spark.udf.register(FUNCTION, arrow_iter_udf(ai_query, StringType()))


def _run_two_arg(
    registry: Registry,
    settings: EngineSettings,
    usage: UsageContext | None,
    tags: Mapping[str, str],
    master_url: str,
    batches: Iterator[tuple[pa.Array, pa.Array]],
) -> Iterator[pa.Array]:
    source = iter(batches)
    first = next(source, None)
    if first is None:
        return
    names = {n for n in first[0].to_pylist() if n is not None}
    if len(names) != 1:
        raise InvalidArgumentError(
            "ai_query's endpoint must be one constant string for the whole query."
        )
    given = names.pop()
    endpoint = registry.resolve(given)
    if endpoint.base_url == EMBEDDED:
        raise ConfigError(embedded_unreachable(endpoint.name, master_url))
    if endpoint.task == EMBEDDINGS:
        raise InvalidArgumentError(
            f"'{endpoint.name}' is an embeddings endpoint and returns ARRAY<FLOAT>; "
            "call it through aiquery.sql(spark, ...) or aiquery.functions.ai_query."
        )
    spec = CallSpec(
        endpoint, {}, StringType().json(), False, True, tags, settings=settings, usage=usage
    )

    def requests() -> Iterator[pa.Array]:
        yield first[1]
        for endpoints, request in source:
            if endpoints.null_count < len(endpoints) and set(endpoints.to_pylist()) - {None, given}:
                raise InvalidArgumentError(
                    "ai_query's endpoint must be one constant string for the whole query."
                )
            yield request

    yield from run(spec, requests())


def error_text(error: BaseException) -> str:
    """The aiquery error inside a Spark exception, without the Java or Python stack."""
    text = str(error)
    for marker in ("[AI_FUNCTION_", "[UNRECOGNIZED_PARAMETER_NAME]", "[AIQUERY_"):
        start = text.find(marker)
        if start >= 0:
            end = text.find(" SQLSTATE: ", start)
            return text[start : end + 16] if end >= 0 else text[start:].splitlines()[0]
    if isinstance(error, AiQueryError):
        return text
    return text.splitlines()[0] if text else type(error).__name__
