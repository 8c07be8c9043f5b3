"""Analysis of one ai_query call site on the driver: every argument checked before any request.

The result is a `CallSpec`, a frozen, picklable descriptor that travels to the executors
inside the UDF; live objects (event loop, HTTP session, limiters) are built from it there.
Analysis only resolves and checks: it starts no server or thread and writes no table (a
built-in endpoint keeps its `EMBEDDED` placeholder URL until `aiquery.spark.runtime` binds
the call site for execution).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.types import (
    ArrayType,
    DataType,
    DoubleType,
    FloatType,
    StringType,
    _parse_datatype_json_string,
)

from aiquery.client.budget import BudgetLimits
from aiquery.client.cache import CacheSettings
from aiquery.client.engine import EngineSettings
from aiquery.client.retry import RetryPolicy
from aiquery.client.sharing import ShareSettings
from aiquery.endpoints.registry import EMBEDDED, Endpoint, Registry, load_registry
from aiquery.errors import (
    ConfigError,
    InvalidArgumentError,
    InvalidModelParametersError,
    InvalidReturnTypeError,
    UnsupportedResponseFormatError,
)
from aiquery.protocols.common import CHAT, COMPLETIONS, CUSTOM, EMBEDDINGS
from aiquery.protocols.tags import RequestTagsError, parse_request_tags, validate_request_tags
from aiquery.protocols.tasks import FUNCTION_TAG, Task
from aiquery.settings import is_local, master, parallelism, setting
from aiquery.spark import ddl, vectors
from aiquery.spark.cache import cache_enabled
from aiquery.usage.driver.settings import usage_context
from aiquery.usage.executor import UsageContext


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# Generation parameters ai_query passes through, with the check each value must pass.
_PARAMETERS: dict[str, tuple[str, Any]] = {
    "max_tokens": ("a positive integer", lambda v: _int(v) and v > 0),
    "temperature": ("a number from 0 to 2", lambda v: _num(v) and 0 <= v <= 2),
    "top_p": ("a number from 0 to 1", lambda v: _num(v) and 0 < v <= 1),
    "top_k": ("a positive integer", lambda v: _int(v) and v > 0),
    "n": ("a positive integer", lambda v: _int(v) and v > 0),
    "stop": (
        "a string or an array of strings",
        lambda v: (
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))
        ),
    ),
    "presence_penalty": ("a number from -2 to 2", lambda v: _num(v) and -2 <= v <= 2),
    "frequency_penalty": ("a number from -2 to 2", lambda v: _num(v) and -2 <= v <= 2),
    "seed": ("an integer", _int),
    "reasoning_effort": (
        "one of low, medium, high",
        lambda v: v in ("minimal", "low", "medium", "high"),
    ),
}
_RESERVED = ("messages", "prompt", "input", "model", "stream", "response_format")
TAGS_SETTING = "requestTags"


@dataclass(frozen=True, slots=True)
class CallSpec:
    """Everything an executor needs to run one ai_query call site."""

    endpoint: Endpoint
    params: Mapping[str, Any]  # modelParameters, plus response_format
    return_type_json: str  # the result's value type T (Spark JSON), before the error struct
    parse_answer: bool  # True when returnType asks to parse the answer text
    fail_on_error: bool
    request_tags: Mapping[str, str] = field(default_factory=dict)
    settings: EngineSettings = field(default_factory=EngineSettings)
    usage: UsageContext | None = None  # None: usage recording is off
    task: Task | None = None  # an AI function's task (ai_classify, ...); None: ai_query
    inputs: tuple[str, ...] = ("request",)  # the UDF's arguments, by parameter name
    variant: bool = False  # the value is a VARIANT, carried as JSON text
    packed: bool = False  # vectors leave the worker packed, for the JVM extension to unpack

    @property
    def function(self) -> str:
        return self.task.function if self.task is not None else "ai_query"

    @property
    def value_type(self) -> DataType:
        return _parse_datatype_json_string(self.return_type_json)

    @property
    def result_type(self) -> DataType:
        value = self.value_type
        return value if self.fail_on_error or self.variant else ddl.error_struct_type(value)

    @property
    def worker_type(self) -> DataType:
        """The type the Python worker returns: the result type, its vectors packed if `packed`."""
        return (vectors.packed_type(self.result_type) if self.packed else None) or self.result_type

    def fingerprint(self) -> str:
        """A stable name for the UDF of this call site (the token is not part of it)."""
        public = replace(self, endpoint=replace(self.endpoint, token=None), usage=None)
        return hashlib.sha256(repr(public).encode()).hexdigest()[:16]


def analyze(
    spark: SparkSession,
    endpoint: str,
    *,
    return_type: str | None = None,
    fail_on_error: bool = True,
    model_parameters: Mapping[str, Any] | None = None,
    response_format: str | None = None,
    request_tags: Mapping[str, str] | None = None,
    registry: Registry | None = None,
    settings: EngineSettings | None = None,
    task: Task | None = None,
    files: bool = False,
) -> CallSpec:
    """Check one call's arguments and resolve its endpoint; raises an AnalysisError subclass."""
    resolved = (registry or load_registry()).resolve(endpoint)
    if resolved.base_url == EMBEDDED and not is_local(spark):
        raise ConfigError(embedded_unreachable(resolved.name, master(spark)))
    kind = resolved.task
    if files and kind != CHAT:
        raise InvalidArgumentError(
            f"files => (images) needs a chat endpoint of a vision model; '{resolved.name}' is "
            f"a {kind} endpoint."
        )
    params: dict[str, Any] = {}
    if model_parameters:
        params.update(_check_model_parameters(resolved, model_parameters))
    if response_format is not None:
        if kind != CHAT:
            raise UnsupportedResponseFormatError(
                f"responseFormat is only supported for chat endpoints; '{resolved.name}' is a {kind} endpoint."
            )
        try:
            params["response_format"] = ddl.response_format_for(response_format)
        except ddl.UnsupportedResponseFormat as e:
            raise UnsupportedResponseFormatError(_strip_class(str(e))) from None
        except ddl.ReturnTypeError as e:
            raise UnsupportedResponseFormatError(str(e)) from None
    value_type, parse = _value_type(resolved, return_type)
    settings = call_settings(spark, resolved, params, settings)
    return CallSpec(
        endpoint=resolved,
        params=params,
        return_type_json=value_type.json(),
        parse_answer=parse,
        fail_on_error=fail_on_error,
        request_tags=call_tags(spark, request_tags, task),
        settings=settings,
        usage=usage_context(spark),
        task=task,
        inputs=("request", "files") if files else ("request",),
    )


def call_tags(
    spark: SparkSession, given: Mapping[str, str] | None, task: Task | None
) -> dict[str, str]:
    """The request tags a call sends: the session's, the call's own, and for an AI function
    `ai_function` naming it (reserved: it overrides a tag of that name)."""
    tags = session_request_tags(spark, given)
    if task is not None:
        tags[FUNCTION_TAG] = task.function
        if len(tags) > 20:
            raise ConfigError(
                f"Invalid request tags: {task.function} adds the tag {FUNCTION_TAG}, and at "
                "most 20 are allowed; remove one."
            )
    return tags


def embedded_unreachable(name: str, master_url: str) -> str:
    return (
        f"Endpoint '{name}' is served by the embedded local emulator, which runs in this "
        f"driver on 127.0.0.1: executors reach it only in local mode, and this session's "
        f"master is {master_url}. Point the databricks-* names at a workspace "
        "(DATABRICKS_HOST and DATABRICKS_TOKEN), or at an emulator the executors can reach "
        "(`aiquery serve --host <address>`, then DATABRICKS_HOST=http://<address>:<port> and "
        "DATABRICKS_TOKEN), or configure endpoints in aiquery.toml."
    )


def call_settings(
    spark: SparkSession,
    endpoint: Endpoint,
    params: Mapping[str, Any],
    settings: EngineSettings | None = None,
) -> EngineSettings:
    """The engine settings of one call site: the session's (or `settings`), whether its
    identical inputs are sent once, and its budget."""
    base = settings or default_settings(spark)
    limits = budget_limits(spark)
    if limits is not None and limits.max_cost is not None and endpoint.price is None:
        raise ConfigError(
            f"aiquery.budget.maxCost is set, but endpoint '{endpoint.name}' has no price: set "
            "input_price_per_million and output_price_per_million for it in the endpoints "
            "file, or use aiquery.budget.maxTokens instead"
        )
    return replace(
        base,
        deduplicate=(dedup := deduplicates(spark, endpoint.task, params)),
        # Across the query's tasks too: an exchange of its own, given when it is bound.
        share=ShareSettings("") if dedup else None,
        budget=limits,
        # On: a placeholder until the call site is bound (`aiquery.spark.cache.bind_cache`).
        cache=CacheSettings("") if cache_enabled(spark) else None,
    )


BUDGET_SETTINGS = ("maxRequests", "maxTokens", "maxCost")


def budget_limits(spark: SparkSession) -> BudgetLimits | None:
    """`aiquery.budget.maxRequests`, `maxTokens` (input + output) and `maxCost` (US dollars),
    each for one query; None when none is set. The key is given when the call is bound."""
    values: dict[str, float] = {}
    for name in BUDGET_SETTINGS:
        given = setting(spark.conf, f"budget.{name}")
        if given is None or not given.strip():
            continue
        try:
            value = float(given)
        except ValueError:
            value = -1.0
        integral = name != "maxCost"
        if value < 0 or (integral and not value.is_integer()):
            kind = "a number of US dollars" if not integral else "a whole number"
            raise ConfigError(
                f"aiquery.budget.{name} is {given!r}; it must be {kind}, 0 or more "
                "(unset it for no limit)"
            )
        values[name] = value
    if not values:
        return None
    tokens, requests = values.get("maxTokens"), values.get("maxRequests")
    return BudgetLimits(
        key="",
        max_requests=None if requests is None else int(requests),
        max_tokens=None if tokens is None else int(tokens),
        max_cost=values.get("maxCost"),
    )


DEDUP_SETTING = "dedup"
_DEDUP_VALUES = ("auto", "true", "false")


def deduplicates(spark: SparkSession, task: str, params: Mapping[str, Any]) -> bool:
    """Are identical inputs of this call site sent once? `aiquery.dedup`: true or false
    forces it; auto (the default) is on unless the call asks for samples, that is
    `temperature` above 0 with no `seed`: then each row asked for an answer of its own."""
    value = (setting(spark.conf, DEDUP_SETTING) or "auto").strip().lower()
    if value not in _DEDUP_VALUES:
        raise ConfigError(
            f"aiquery.{DEDUP_SETTING} is {value!r}; use auto (the default: identical inputs "
            "are sent once unless modelParameters ask for samples), true or false"
        )
    if value != "auto":
        return value == "true"
    if task == EMBEDDINGS:
        return True
    sampling = (params.get("temperature") or 0) > 0 and params.get("seed") is None
    return not sampling


# Without aiquery.concurrencyPerTask a task starts at 64 requests in flight and doubles per
# round trip up to 512 while the endpoint keeps up (no 429, no queueing): 64 fills the
# window of a 100 ms endpoint, and a 2 s LLM needs 512 per task to reach 256 rows/s.
START_PER_TASK = 64
MAX_PER_TASK = 512


def default_settings(spark: SparkSession) -> EngineSettings:
    """Engine knobs from the session: `aiquery.concurrencyPerTask`, `aiquery.retryMaxAttempts`.

    A set concurrencyPerTask is the window, from the start; unset, the window adapts."""
    conf = spark.conf
    try:
        given = setting(conf, "concurrencyPerTask")
        concurrency = int(given) if given else MAX_PER_TASK
        attempts = int(setting(conf, "retryMaxAttempts") or RetryPolicy().max_attempts)
        return EngineSettings(
            concurrency=concurrency,
            initial_concurrency=None if given else START_PER_TASK,
            parallelism=parallelism(spark),
            policy=RetryPolicy(max_attempts=attempts, max_throttled_attempts=max(30, attempts)),
        )
    except ValueError as e:
        raise ConfigError(
            f"aiquery.concurrencyPerTask and aiquery.retryMaxAttempts must be positive integers ({e})"
        ) from None


def _check_model_parameters(endpoint: Endpoint, given: Mapping[str, Any]) -> dict[str, Any]:
    if endpoint.task == CUSTOM:
        raise InvalidModelParametersError(
            "UNSUPPORTED_ENDPOINT_TYPE",
            f"modelParameters are not supported for custom model endpoints such as '{endpoint.name}'.",
        )
    checked: dict[str, Any] = {}
    for name, value in given.items():
        if name in _RESERVED:
            raise InvalidModelParametersError(
                "FOUND_RESERVED_PARAMETER_NAME",
                f"modelParameters may not set '{name}', which belongs to the request. "
                f"Reserved: {', '.join(_RESERVED)}.",
            )
        if name not in _PARAMETERS:
            raise InvalidModelParametersError(
                "UNKNOWN_PARAMETER_NAME",
                f"Unknown model parameter '{name}'. Valid: {', '.join(sorted(_PARAMETERS))}.",
            )
        if value is None:
            continue
        expected, check = _PARAMETERS[name]
        if not check(value):
            raise InvalidModelParametersError(
                "INVALID_PARAMETER_VALUE",
                f"Model parameter '{name}' must be {expected}, got {value!r}.",
            )
        checked[name] = value
    if endpoint.task == EMBEDDINGS and checked:
        raise InvalidModelParametersError(
            "UNSUPPORTED_ENDPOINT_TYPE",
            f"Embedding endpoint '{endpoint.name}' takes no generation parameters ({', '.join(checked)}).",
        )
    return checked


def _value_type(endpoint: Endpoint, return_type: str | None) -> tuple[DataType, bool]:
    default: DataType = ArrayType(FloatType()) if endpoint.task == EMBEDDINGS else StringType()
    if return_type is None:
        return default, False
    try:
        parsed = ddl.parse_ddl(return_type)
    except ddl.ReturnTypeError as e:
        raise InvalidReturnTypeError(str(e)) from None
    if endpoint.task == EMBEDDINGS:
        if parsed not in (ArrayType(FloatType()), ArrayType(DoubleType())):
            raise InvalidReturnTypeError(
                f"Embedding endpoint '{endpoint.name}' returns ARRAY<FLOAT> (or ARRAY<DOUBLE>), not {ddl.spark_type_sql(parsed)}."
            )
        return parsed, False
    if endpoint.task in (CHAT, COMPLETIONS) and parsed == StringType():
        return parsed, False
    return parsed, True


def session_request_tags(
    spark: SparkSession, call_tags: Mapping[str, str] | None
) -> dict[str, str]:
    """Session tags (`SET aiquery.requestTags = '{...}'`) overlaid with the call's own."""
    tags: dict[str, str] = {}
    raw = (setting(spark.conf, TAGS_SETTING) or "").strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]  # SET aiquery.requestTags = '{...}' keeps the quotes
    try:
        if raw:
            tags.update(parse_request_tags(raw))
        if call_tags:
            tags.update(validate_request_tags(call_tags))
        return validate_request_tags(tags)
    except RequestTagsError as e:
        raise ConfigError(
            f"Invalid request tags (aiquery.{TAGS_SETTING} or requestTags=): {e}"
        ) from None


def _strip_class(message: str) -> str:
    return message.split("] ", 1)[1] if message.startswith("[") and "] " in message else message
