"""Analysis of Databricks' task AI functions (ai_classify, ai_extract, ...): arguments bound
and checked on the driver, before any request, into a `CallSpec` for the one engine.

Every chat-based function is a prompt plus structured output over ai_query's machinery
(`aiquery.protocols.tasks` says what is sent and how the answer is read); ai_similarity
compares two texts' vectors from an embeddings endpoint. The endpoint behind each function
is a setting: `aiquery.aiFunctions.<function>.endpoint`, else `aiquery.aiFunctions.endpoint`,
else Databricks' chat model `DEFAULT_CHAT` (embeddings: `DEFAULT_EMBEDDINGS`).

The same analysis serves the SQL extension (arguments as the JVM evaluated them), the
text-rewriting path and the DataFrame API (`aiquery.functions`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.types import DataType, FloatType, StringType, StructField, StructType

from aiquery.endpoints.registry import Registry
from aiquery.errors import AnalysisError, InvalidArgumentError
from aiquery.protocols.common import CHAT, EMBEDDINGS
from aiquery.protocols.tasks import FUNCTIONS, LANGUAGES, Task, response_format
from aiquery.settings import setting
from aiquery.spark.aischema import check_options, check_user_schema, labels_v1, labels_v2
from aiquery.spark.callspec import CallSpec, analyze

DEFAULT_CHAT = "databricks-meta-llama-3-3-70b-instruct"
DEFAULT_EMBEDDINGS = "databricks-gte-large-en"
COLUMN, CONSTANT = "column", "constant"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: str  # COLUMN: a UDF input (a constant is fine too); CONSTANT: checked at analysis
    required: bool = True
    default: Any = None


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument as given: its name when named, its SQL type when known (the JVM knows,
    the DataFrame API does not), and its value when it is a constant."""

    name: str | None = None
    type: DataType | None = None
    constant: bool = False
    value: Any = None


_CONTENT = Param("content", COLUMN)
SIGNATURES: dict[str, tuple[Param, ...]] = {
    "ai_analyze_sentiment": (_CONTENT,),
    "ai_classify": (_CONTENT, Param("labels", CONSTANT), Param("options", CONSTANT, False)),
    "ai_extract": (_CONTENT, Param("labels", CONSTANT), Param("options", CONSTANT, False)),
    "ai_fix_grammar": (_CONTENT,),
    "ai_gen": (Param("prompt", COLUMN),),
    "ai_mask": (_CONTENT, Param("labels", CONSTANT)),
    "ai_similarity": (Param("expr1", COLUMN), Param("expr2", COLUMN)),
    "ai_summarize": (_CONTENT, Param("max_words", CONSTANT, False, 50)),
    "ai_translate": (_CONTENT, Param("to_lang", COLUMN)),
}
# ai_extract's v2 argument is Databricks' `schema`; either name binds it.
_ALIASES = {("ai_extract", "schema"): "labels"}
assert set(SIGNATURES) == set(FUNCTIONS)


def bind(function: str, args: Sequence[Arg]) -> dict[str, int]:
    """Parameter name → index in `args`: positional first, then `name => value`."""
    params = SIGNATURES[function]
    names = [p.name for p in params]
    bound: dict[str, int] = {}
    named = False
    for i, arg in enumerate(args):
        if arg.name is None:
            if named:
                raise InvalidArgumentError(
                    f"{function}: a positional argument follows a named one."
                )
            if i >= len(params):
                raise InvalidArgumentError(
                    f"{function} takes at most {len(params)} arguments ({', '.join(names)}), "
                    f"got {len(args)}.",
                    error_class="WRONG_NUM_ARGS",
                )
            name = names[i]
        else:
            named = True
            given = arg.name.lower()
            name = _ALIASES.get((function, given)) or next(
                (n for n in names if n.lower() == given), ""
            )
            if not name:
                raise InvalidArgumentError(
                    f"{function} has no parameter named '{arg.name}'. Valid: {', '.join(names)}.",
                    error_class="UNRECOGNIZED_PARAMETER_NAME",
                )
        if name in bound:
            raise InvalidArgumentError(f"{function}: the argument {name} is given twice.")
        bound[name] = i
    missing = [p.name for p in params if p.required and p.name not in bound]
    if missing:
        raise InvalidArgumentError(
            f"{function} needs the argument{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} ({', '.join(names)}).",
            error_class="WRONG_NUM_ARGS",
        )
    return bound


def analyze_function(
    spark: SparkSession,
    function: str,
    args: Sequence[Arg],
    *,
    registry: Registry | None = None,
) -> tuple[CallSpec, list[int]]:
    """The call's spec, and which of `args` are the UDF's inputs, in order."""
    function = function.lower()
    bound = bind(function, args)
    params = SIGNATURES[function]
    values: dict[str, Any] = {}
    for param in params:
        arg = args[bound[param.name]] if param.name in bound else None
        if param.kind == CONSTANT:
            if arg is not None and not arg.constant:
                raise InvalidArgumentError(
                    f"{function}'s {param.name} must be a constant (a literal), not a column."
                )
            values[param.name] = param.default if arg is None else arg.value
        elif arg is not None and arg.type is not None and not isinstance(arg.type, StringType):
            raise InvalidArgumentError(
                f"{function}'s {param.name} must be a STRING, not {arg.type.simpleString()}; "
                f"CAST it to STRING."
            )
    inputs = [p.name for p in params if p.kind == COLUMN]
    task, value_type, variant = _task(function, values)
    if function == "ai_translate" and args[bound["to_lang"]].constant:
        task = replace(task, options={"to_lang": language(args[bound["to_lang"]].value)})
        inputs = ["content"]  # checked here once, not per row
    endpoint = _endpoint(spark, function)
    spec = analyze(
        spark,
        endpoint,
        registry=registry,
        response_format=None,
        task=task,
    )
    expected = EMBEDDINGS if function == "ai_similarity" else CHAT
    if spec.endpoint.task != expected:
        kind = "an embeddings" if expected == EMBEDDINGS else "a chat"
        raise InvalidArgumentError(
            f"{function} needs {kind} endpoint, and '{spec.endpoint.name}' is a "
            f"{spec.endpoint.task} endpoint: set aiquery.aiFunctions.{function}.endpoint "
            f"(or aiquery.aiFunctions.endpoint) to one."
        )
    params_with_format = dict(spec.params)
    if (fmt := response_format(task)) is not None:
        params_with_format["response_format"] = fmt
    spec = replace(
        spec,
        params=params_with_format,
        return_type_json=value_type.json(),
        parse_answer=False,
        fail_on_error=not variant,  # v2 functions answer a failed row's error as data
        inputs=tuple(inputs),
        variant=variant,
    )
    return spec, [bound[name] for name in inputs]


def _endpoint(spark: SparkSession, function: str) -> str:
    own = setting(spark.conf, f"aiFunctions.{function}.endpoint")
    if own:
        return own
    if function == "ai_similarity":
        return DEFAULT_EMBEDDINGS
    return setting(spark.conf, "aiFunctions.endpoint") or DEFAULT_CHAT


def _task(function: str, values: Mapping[str, Any]) -> tuple[Task, DataType, bool]:
    """The task, the function's value type, and whether it is a VARIANT (sent as JSON text)."""
    if function in ("ai_classify", "ai_extract"):
        return _versioned(function, values["labels"], values.get("options"))
    if function == "ai_mask":
        return (
            Task(function, {"labels": labels_v1(function, values["labels"], 1, 100)}),
            StringType(),
            False,
        )
    if function == "ai_summarize":
        return (
            Task(function, {"max_words": max_words(values.get("max_words"))}),
            StringType(),
            False,
        )
    if function == "ai_similarity":
        return Task(function), FloatType(), False
    return Task(function), StringType(), False


def _versioned(function: str, labels: Any, options: Any) -> tuple[Task, DataType, bool]:
    """v1 (labels an ARRAY<STRING>, no options): a STRING or STRUCT. v2 (labels a JSON
    string, or options given): Databricks' VARIANT `{"response": ..., "error_message": ...}`."""
    if isinstance(labels, list) and options is None:
        if function == "ai_classify":
            return (
                Task(function, {"labels": labels_v1(function, labels, 2, 20), "version": "1"}),
                StringType(),
                False,
            )
        names = labels_v1(function, labels, 1, 128)
        struct = StructType([StructField(n, StringType(), True) for n in names])
        return Task(function, {"labels": names, "version": "1"}), struct, False
    checked = check_options(function, options)
    if function == "ai_classify":
        names, descriptions = labels_v2(labels)
        task_options = {"labels": names, "descriptions": descriptions, **checked}
    else:
        task_options = {"schema": check_user_schema(labels), **checked}
    return Task(function, task_options), StringType(), True


def max_words(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AnalysisError(
            f"The maximum number of words must be a non-negative integer, but got {value!r}.",
            error_class="AI_FUNCTION_INVALID_MAX_WORDS",
        )
    return value


def language(value: Any) -> str:
    """A supported ai_translate language as its code ('es', 'Spanish' and 'ES' are 'es')."""
    text = str(value).strip().lower() if isinstance(value, str) else ""
    for code, name in LANGUAGES.items():
        if text in (code, name.lower()):
            return code
    supported = ", ".join(f"{c} ({n})" for c, n in LANGUAGES.items())
    raise AnalysisError(
        f"ai_translate does not support the language {json.dumps(value)}. Supported: {supported}.",
        error_class="AI_FUNCTION_UNSUPPORTED_LANGUAGE",
    )
