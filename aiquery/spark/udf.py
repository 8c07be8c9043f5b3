"""The Arrow iterator UDF that runs one ai_query call site inside each Spark task.

Each task streams its Arrow batches through one `BatchEngine` (one event loop, one HTTP
session, one window of in-flight requests) and returns one Arrow array per input batch,
same length, same order, typed as the call site's result type.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import SparkSession
from pyspark.sql.pandas import functions as pandas_functions
from pyspark.sql.types import DataType, StringType
from pyspark.sql.udf import UserDefinedFunction

from aiquery import logs
from aiquery.client.engine import BatchEngine, RowResult
from aiquery.client.wire import USER_AGENT, wire_for
from aiquery.errors import InvalidArgumentError, ParseCastError, RequestError
from aiquery.protocols.common import CUSTOM
from aiquery.spark import answers
from aiquery.spark.callspec import CallSpec
from aiquery.spark.runtime import bind
from aiquery.usage.executor import writer_for


def arrow_iter_udf(
    fn: Callable[..., Iterator[pa.Array]], return_type: DataType
) -> UserDefinedFunction:
    """An Arrow UDF; its type hints (`Iterator[pa.Array] -> Iterator[pa.Array]`) make it SCALAR_ITER."""
    # The stubs' overloads cannot express inference from type hints, hence Any.
    factory: Any = pandas_functions.arrow_udf
    udf: UserDefinedFunction = factory(fn, returnType=return_type)
    # Nondeterministic: Spark must not duplicate the call when it collapses projections
    # (`SELECT s, upper(s) FROM (SELECT ai_query(...) AS s ...)` would pay twice).
    return udf.asNondeterministic()


def make_udf(spark: SparkSession, spec: CallSpec) -> UserDefinedFunction:
    """The call site bound for execution (`runtime.bind`), as a UDF of its result type; its
    plan shows only `ai_query(<request>)`."""
    bound = bind(spark, spec)

    def ai_query(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        yield from run(bound, batches)

    return arrow_iter_udf(ai_query, bound.result_type)


def run(spec: CallSpec, batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
    """Answer every row of every batch; the executor-side body of the UDF."""
    logs.setup()
    wire = wire_for(spec.endpoint, spec.params, spec.request_tags)
    value_type = spec.value_type
    custom = spec.endpoint.task == CUSTOM
    inputs = (_inputs(batch, custom, spec.endpoint.name) for batch in batches)
    recorder = (
        writer_for(
            spec.usage,
            spec.endpoint,
            api_type=wire.api_type,
            url=wire.url,
            user_agent=USER_AGENT,
            tags=spec.request_tags,
            spark_task=_task_name(),
        )
        if spec.usage
        else None
    )
    # The engine drains the recorder on its loop as it closes, failed or not.
    with BatchEngine(
        spec.endpoint, wire, spec.settings, fail_fast=spec.fail_on_error, recorder=recorder
    ) as engine:
        for rows in engine.map(inputs):
            values = [_value(spec, value_type, row) for row in rows]
            yield answers.to_arrow_array(values, spec.result_type)


def _task_name() -> str | None:
    """stage.partition.attempt of the running Spark task."""
    task = TaskContext.get()
    if task is None:
        return None
    return f"{task.stageId()}.{task.partitionId()}.{task.attemptNumber()}"


def _inputs(batch: pa.Array, custom: bool, endpoint: str) -> list[Any]:
    try:
        values: list[Any] = batch.to_pylist()
    except UnicodeDecodeError:
        # Spark strings may hold bytes that are not UTF-8 (CAST(X'FF' AS STRING)); JSON
        # cannot carry them, so each invalid sequence is sent as U+FFFD, as a reader would.
        values = _lenient_pylist(batch)
    for value in values:
        if value is None:
            continue
        if custom and not isinstance(value, dict):
            raise InvalidArgumentError(
                f"Custom model endpoint '{endpoint}' takes a STRUCT request whose fields are the "
                "model's inputs, e.g. named_struct('feature_a', a, 'feature_b', b)."
            )
        if not custom and not isinstance(value, str):
            raise InvalidArgumentError(
                f"Endpoint '{endpoint}' takes a STRING request; cast it or build the prompt with concat()."
            )
        break  # one batch has one type; checking the first non-null value is enough
    return values


def _lenient_pylist(array: pa.Array) -> list[Any]:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        binary = pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary()
        return [
            None if b is None else b.decode("utf-8", "replace")
            for b in array.view(binary).to_pylist()
        ]
    if pa.types.is_struct(array.type):
        fields = [array.type.field(i).name for i in range(array.type.num_fields)]
        columns = [_lenient_pylist(array.field(i)) for i in range(len(fields))]
        valid = array.is_valid().to_pylist()
        return [
            dict(zip(fields, values, strict=True)) if ok else None
            for ok, *values in zip(valid, *columns, strict=True)
        ]
    values: list[Any] = array.to_pylist()
    return values


def _value(spec: CallSpec, value_type: DataType, row: RowResult) -> Any:
    """The row's result value, or its error as data when failOnError => false."""
    if row.error is None and row.value is None:
        return None if spec.fail_on_error else {"result": None, "errorMessage": None}
    error: RequestError | None = row.error
    value: Any = None
    if error is None:
        try:
            value = _convert(spec, value_type, row.value)
        except answers.AnswerCastError as e:
            error = ParseCastError(spec.endpoint.name, str(e))
    if error is not None:
        if spec.fail_on_error:
            raise error
        return {"result": None, "errorMessage": str(error)}
    return value if spec.fail_on_error else {"result": value, "errorMessage": None}


def _convert(spec: CallSpec, value_type: DataType, value: Any) -> Any:
    if spec.parse_answer:
        text = value if isinstance(value, str) else json.dumps(value)
        return answers.parse_answer(text, value_type)
    if isinstance(value_type, StringType):
        return value if isinstance(value, str) else json.dumps(value)
    return value  # embeddings: a list of floats
