"""The DataFrame API: `ai_query` and Databricks' task AI functions as Column expressions.

from aiquery.functions import ai_query, ai_classify
df.select(ai_query("databricks-gpt-5-4", F.concat(F.lit("Summarize: "), "text")).alias("summary"))
df.select(ai_classify("ticket", ["urgent", "not urgent"]).alias("priority"))

Text arguments (`content`, `prompt`, `expr1`, `expr2`) are columns or column names; labels,
options and `max_words` are Python values, checked now, before any request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from aiquery.errors import ConfigError, InvalidArgumentError
from aiquery.spark.aifunctions import Arg, analyze_function
from aiquery.spark.callspec import analyze
from aiquery.spark.udf import make_udf


def ai_query(
    endpoint: str,
    request: Column | str,
    returnType: str | None = None,  # noqa: N803 - Databricks' argument names
    failOnError: bool = True,  # noqa: N803
    modelParameters: Mapping[str, Any] | None = None,  # noqa: N803
    responseFormat: str | None = None,  # noqa: N803
    requestTags: Mapping[str, str] | None = None,  # noqa: N803
    *,
    return_type: str | None = None,
    files: Column | str | None = None,
) -> Column:
    """Query `endpoint` once per row of `request` (a column or column name).

    Same arguments and result types as Databricks' SQL `ai_query`: STRING for chat and
    completions, ARRAY<FLOAT> for embeddings, `returnType` parsed like from_json, and with
    `failOnError=False` a STRUCT<result, errorMessage>. `requestTags` adds to the
    session's `aiquery.requestTags`. Arguments are checked now, before any request.
    `return_type` is Databricks' PySpark name for `returnType`. `files` is a BINARY column
    of images (PNG, JPEG, GIF, WebP) sent with each row's prompt to a vision chat model.
    """
    if return_type is not None and returnType is not None:
        raise InvalidArgumentError(
            "ai_query got both returnType and return_type; they are the same argument "
            "(SQL's name and Databricks' PySpark name): pass one."
        )
    spark = _session("ai_query")
    spec = analyze(
        spark,
        endpoint,
        return_type=returnType if return_type is None else return_type,
        fail_on_error=failOnError,
        model_parameters=modelParameters,
        response_format=responseFormat,
        request_tags=requestTags,
        files=files is not None,
    )
    columns = [_column(request)] + ([_column(files)] if files is not None else [])
    result: Column = make_udf(spark, spec)(*columns)
    return result


def ai_analyze_sentiment(content: Column | str) -> Column:
    """positive, negative, neutral or mixed; NULL when no sentiment can be detected."""
    return _call("ai_analyze_sentiment", content)


def ai_classify(
    content: Column | str, labels: Sequence[str] | str, options: Mapping[str, Any] | None = None
) -> Column:
    """One of `labels` (a list of 2-20: a STRING, NULL when none fits); with labels as a JSON
    array or `{label: description}` object, or with `options`, Databricks' v2 VARIANT
    `{"response": [...], "error_message": ...}`."""
    return _call("ai_classify", content, _constant(labels), _constant(options))


def ai_extract(
    content: Column | str, labels: Sequence[str] | str, options: Mapping[str, Any] | None = None
) -> Column:
    """A STRUCT of one STRING per label; with a JSON schema (or `options`), the v2 VARIANT."""
    return _call("ai_extract", content, _constant(labels), _constant(options))


def ai_fix_grammar(content: Column | str) -> Column:
    return _call("ai_fix_grammar", content)


def ai_gen(prompt: Column | str) -> Column:
    return _call("ai_gen", prompt)


def ai_mask(content: Column | str, labels: Sequence[str]) -> Column:
    """The text with each piece of the labelled kinds (person, email, ...) as [MASKED]."""
    return _call("ai_mask", content, _constant(labels))


def ai_similarity(expr1: Column | str, expr2: Column | str) -> Column:
    """A FLOAT in [0, 1] from the embeddings' cosine; 1 for the same text."""
    return _call("ai_similarity", expr1, expr2)


def ai_summarize(content: Column | str, max_words: int = 50) -> Column:
    """A summary of about `max_words` words (0: no limit)."""
    return _call("ai_summarize", content, _constant(max_words))


def ai_translate(content: Column | str, to_lang: Column | str) -> Column:
    """The text in `to_lang` (en, de, fr, it, pt, hi, es, th; a language code, or a column)."""
    language = (
        (to_lang, Arg())
        if isinstance(to_lang, Column)
        else (None, Arg(constant=True, value=to_lang))
    )
    return _call("ai_translate", content, language)


_Given = Column | str | tuple[Column | None, Arg]


def _constant(value: Any) -> tuple[None, Arg] | None:
    if value is None:
        return None
    plain = list(value) if isinstance(value, list | tuple) else value
    return None, Arg(constant=True, value=dict(plain) if isinstance(plain, Mapping) else plain)


def _call(function: str, *given: _Given | None) -> Column:
    """The AI function's call, analysed now: its UDF over its column arguments."""
    spark = _session(function)
    present = [g for g in given if g is not None]
    pairs = [g if isinstance(g, tuple) else (_column(g), Arg()) for g in present]
    spec, inputs = analyze_function(spark, function, [arg for _, arg in pairs])
    columns: list[Column] = []
    for i in inputs:
        column, arg = pairs[i]
        columns.append(column if column is not None else F.lit(arg.value))
    result: Column = make_udf(spark, spec)(*columns)
    return F.parse_json(result) if spec.variant else result


def _column(value: Column | str) -> Column:
    return F.col(value) if isinstance(value, str) else value


def _session(function: str) -> SparkSession:
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise ConfigError(f"{function} needs an active SparkSession; create one first.")
    return spark
