"""The Arrow iterator UDF that runs one ai_query call site inside each Spark task.

Each task streams its Arrow batches through one `BatchEngine` (one event loop, one HTTP
session, one window of in-flight requests) and returns one Arrow array per input batch,
same length, same order, typed as the call site's result type.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import SparkSession
from pyspark.sql.pandas import functions as pandas_functions
from pyspark.sql.types import ArrayType, DataType
from pyspark.sql.udf import UserDefinedFunction

from aiquery import logs
from aiquery.client.engine import BatchEngine
from aiquery.client.wire import USER_AGENT, wire_for
from aiquery.errors import RequestError
from aiquery.spark import answers, vectors, worker_setup
from aiquery.spark.callspec import CallSpec
from aiquery.spark.rows import Rows
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
    """The call site bound for execution (`runtime.bind`), as a UDF of its result type and
    of its arguments (`spec.inputs`); its plan shows only `ai_query(<request>)`."""
    bound = bind(spark, spec)
    if len(spec.inputs) == 1:

        def ai_query(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
            yield from run(bound, batches)

        return arrow_iter_udf(ai_query, bound.worker_type)

    def ai_query_n(batches: Iterator[tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        yield from run(bound, batches)

    return arrow_iter_udf(ai_query_n, bound.worker_type)


def run(spec: CallSpec, batches: Iterator[Any]) -> Iterator[pa.Array]:
    """Answer every row of every batch; the executor-side body of the UDF. A batch is one
    Arrow array, or a tuple of them when the UDF has several arguments. Once the task's rows
    are answered and its engine gone, the worker returns what they freed to the system."""
    yield from _answer(spec, batches)
    worker_setup.release_memory()


def _answer(spec: CallSpec, batches: Iterator[Any]) -> Iterator[pa.Array]:
    logs.setup()
    worker_setup.prepare()
    wire = wire_for(spec.endpoint, spec.params, spec.request_tags)
    rows = Rows(spec)
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
    # Parsed once per task, not per batch. Vectors are packed when the JVM extension unpacks
    # them, and answered in slices as each is complete (Spark checks only the total row
    # count): a batch of them (40 MB for 10,000 rows of 1,024 floats) waited in memory for
    # its slowest request, and then for its hand-back, with the next batch's answers.
    result_type = spec.result_type
    part = _VECTOR_SLICE if spec.packed or isinstance(result_type, ArrayType) else 0
    to_arrow = vectors.pack if spec.packed else answers.to_arrow_array
    # The engine reads ahead, and hands back each batch (or each slice of one) in order.
    contents: deque[list[Any]] = deque()

    def inputs() -> Iterator[list[Any]]:
        for batch in batches:
            values, content = rows.inputs(batch)
            if part:  # as the engine slices the batch: `part` rows each, one if it is empty
                contents.extend(content[i : i + part] for i in range(0, max(1, len(content)), part))
            else:
                contents.append(content)
            yield values

    # The engine drains the recorder on its loop as it closes, failed or not.
    with BatchEngine(
        spec.endpoint, wire, spec.settings, fail_fast=spec.fail_on_error, recorder=recorder
    ) as engine:
        try:
            for results in engine.map(inputs(), part=part):
                yield to_arrow(rows.values(results, contents.popleft()), result_type)
                if part:
                    # PySpark's write of a slice returns once the JVM has read it; while the
                    # JVM turns it into rows, the engine's loop takes a few turns. Without
                    # them no answer was read for ~70 ms a 10,000-row batch (alternating D
                    # runs: 0.86-0.92 of the bare loop without, 0.94-0.96 with).
                    engine.pump()
        except RequestError as e:  # said of the function the user called (ai_classify, ...)
            raise e.for_function(spec.function) from None


_VECTOR_SLICE = 1024  # rows per slice of a batch of ARRAY results (embeddings)


def _task_name() -> str | None:
    """stage.partition.attempt of the running Spark task."""
    task = TaskContext.get()
    if task is None:
        return None
    return f"{task.stageId()}.{task.partitionId()}.{task.attemptNumber()}"
