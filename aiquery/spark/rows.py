"""What a call site's UDF arguments become, row by row, and what its answers become.

One input batch (an Arrow array per UDF argument) becomes one engine input per row: the
request itself, a `Prompt` (an AI function's system prompt, ai_query's images), a pair of
texts for ai_similarity, NULL, or the row's error when it cannot be sent (an image that is
not one, a language ai_translate does not know). Each answer becomes the call's value:
`returnType` parsed, an AI function's answer decoded, a VARIANT's JSON text, or the row's
error (raised, or as data, as the function's failure mode says).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql.types import StringType

from aiquery.client.sending import RowResult
from aiquery.client.wire import Prompt
from aiquery.errors import InvalidArgumentError, ParseCastError, RequestError
from aiquery.protocols.common import CUSTOM, Image, Vector
from aiquery.protocols.images import FORMATS, sniff
from aiquery.protocols.tasks import KINDS, Task, TaskAnswerError, decode, system_prompt
from aiquery.spark import answers
from aiquery.spark.aifunctions import language as checked_language
from aiquery.spark.callspec import CallSpec

Batch = Any  # one pa.Array, or a sequence of them (one per UDF argument)


class Rows:
    """A call site's rows: engine inputs from a batch, values from the engine's results."""

    def __init__(self, spec: CallSpec) -> None:
        self.spec = spec
        self.value_type = spec.value_type
        self.similarity = spec.function == "ai_similarity"
        self._prompt = self._prompt_builder()

    def inputs(self, batch: Batch) -> tuple[list[Any], list[Any]]:
        """The engine's inputs for `batch`, and each row's content (what its answer is read
        against: ai_extract cites spans of it)."""
        columns = [batch] if isinstance(batch, pa.Array) else list(batch)
        values = [_pylist(c) for c in columns]
        first = values[0]
        for texts in values[:2] if self.similarity else values[:1]:
            _check_first(self.spec, texts)
        if self.similarity:
            pairs = [
                (a, b) if a is not None and b is not None else (None, None)
                for a, b in zip(*values, strict=True)
            ]
            return [text for pair in pairs for text in pair], first
        if self._prompt is None:  # the request as it is: the common case, no per-row work
            return first, first
        extra = values[1] if len(values) > 1 else [None] * len(first)
        return [self._prompt(v, x) for v, x in zip(first, extra, strict=True)], first

    def values(self, results: list[RowResult], contents: list[Any]) -> list[Any]:
        if self.similarity:
            pairs = zip(results[0::2], results[1::2], strict=True)
            return [self._similarity(a, b) for a, b in pairs]
        return [self._value(r, c) for r, c in zip(results, contents, strict=True)]

    # --- rows out -----------------------------------------------------------------------

    def _prompt_builder(self) -> Callable[[Any, Any], Any] | None:
        spec, task = self.spec, self.spec.task
        if task is not None and task.function in KINDS:
            fixed = system_prompt(task) if spec.inputs == ("content",) else None

            def chat_task(content: Any, language: Any) -> Any:
                if content is None:
                    return None
                if fixed is not None:
                    return Prompt(content, fixed)
                return _translate_prompt(content, language, task)

            return chat_task
        if spec.inputs == ("request", "files"):
            limit = spec.endpoint.payload_limit

            def with_files(request: Any, files: Any) -> Any:
                if request is None or files is None:
                    return request
                return _image_prompt(request, files, limit, spec.endpoint.name)

            return with_files
        return None

    # --- answers back -------------------------------------------------------------------

    def _value(self, row: RowResult, content: Any) -> Any:
        spec = self.spec
        if row.error is None and row.value is None:
            return (
                None
                if spec.fail_on_error or spec.variant
                else {"result": None, "errorMessage": None}
            )
        error: RequestError | None = row.error
        value: Any = None
        if error is None:
            try:
                value = self._convert(row.value, content)
            except (answers.AnswerCastError, TaskAnswerError) as e:
                error = ParseCastError(spec.endpoint.name, str(e))
        if error is not None:
            error = error.for_function(spec.function)
            if spec.variant:  # v2 AI functions: the error is data in the VARIANT
                return json.dumps({"response": None, "error_message": str(error)})
            if spec.fail_on_error:
                raise error
            return {"result": None, "errorMessage": str(error)}
        return (
            value if spec.fail_on_error or spec.variant else {"result": value, "errorMessage": None}
        )

    def _convert(self, value: Any, content: Any) -> Any:
        spec = self.spec
        if spec.task is not None and spec.task.function in KINDS:
            decoded = decode(spec.task, value, content if isinstance(content, str) else "")
            return json.dumps(decoded, ensure_ascii=False) if spec.variant else decoded
        if spec.parse_answer:
            text = value if isinstance(value, str) else _json(value)
            return answers.parse_answer(text, self.value_type)
        if isinstance(self.value_type, StringType):
            return value if isinstance(value, str) else _json(value)
        return value  # embeddings: float32 values, straight into ARRAY<FLOAT>

    def _similarity(self, a: RowResult, b: RowResult) -> float | None:
        error = a.error or b.error
        if error is not None:
            raise error.for_function("ai_similarity")
        if a.value is None or b.value is None:
            return None
        return cosine(a.value, b.value)


def cosine(a: Vector, b: Vector) -> float:
    """The cosine of two vectors, clamped to [0, 1] (1: the same text); in float64."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"vectors of {x.size} and {y.size} values cannot be compared")
    norm = math.sqrt(float(np.dot(x, x))) * math.sqrt(float(np.dot(y, y)))
    if norm == 0:
        return 0.0
    return min(1.0, max(0.0, float(np.dot(x, y)) / norm))


def _json(value: Any) -> str:
    """An answer that is not text as JSON (an embedding as its list of numbers)."""
    return json.dumps(value.tolist() if isinstance(value, np.ndarray) else value)


def _translate_prompt(content: str, language: Any, task: Task) -> Prompt | None:
    """ai_translate with a per-row language, checked here as analysis checks a constant:
    an unsupported one fails the query (AI_FUNCTION_UNSUPPORTED_LANGUAGE), nothing sent."""
    if language is None:
        return None
    return Prompt(
        content, system_prompt(Task(task.function, {"to_lang": checked_language(language)}))
    )


def _image_prompt(request: str, data: bytes, limit: int, endpoint: str) -> Prompt | RequestError:
    info = sniff(data)
    if info is None:
        return RequestError(
            endpoint,
            f"the file of this row is not an image ({', '.join(FORMATS)}: the type is read from "
            "its bytes), so nothing was sent",
            attempts=0,
        )
    encoded = (len(data) + 2) // 3 * 4
    if encoded + len(request.encode()) > limit:
        return RequestError(
            endpoint,
            f"the image of this row is {len(data):,} bytes, over the endpoint's "
            f"{limit // (1024 * 1024)} MB request limit once base64-encoded, so nothing was sent",
            attempts=0,
        )
    return Prompt(request, images=(Image(info.media_type, bytes(data)),))


def _check_first(spec: CallSpec, values: list[Any]) -> None:
    """The request's type, checked on its first non-NULL value (one batch has one type)."""
    custom = spec.endpoint.task == CUSTOM
    for value in values:
        if value is None:
            continue
        if custom and not isinstance(value, dict):
            raise InvalidArgumentError(
                f"Custom model endpoint '{spec.endpoint.name}' takes a STRUCT request whose "
                "fields are the model's inputs, e.g. named_struct('feature_a', a, 'feature_b', b)."
            )
        if not custom and not isinstance(value, str):
            raise InvalidArgumentError(
                f"Endpoint '{spec.endpoint.name}' takes a STRING request; cast it or build the "
                "prompt with concat()."
            )
        return


def _pylist(array: pa.Array) -> list[Any]:
    try:
        values: list[Any] = array.to_pylist()
    except UnicodeDecodeError:
        # Spark strings may hold bytes that are not UTF-8 (CAST(X'FF' AS STRING)); JSON
        # cannot carry them, so each invalid sequence is sent as U+FFFD, as a reader would.
        values = _lenient_pylist(array)
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
