"""Where a request goes and what it looks like: an endpoint looked up in the protocol table.

A `Wire` turns the inputs of one HTTP request (one prompt, or many texts for embeddings,
or many records for a custom model) into a body, and the response body back into one
output per input. The URL, `api_type`, auth header and codecs come from the endpoint's row
of `aiquery.protocols.table`, the same row the emulator serves; what ai_query makes of
each task (one user message per prompt, the first of `n` completions, estimates for
unreported token counts) is the per-task part below.

The wire carries only text that UTF-8 can encode. A Python string can hold a lone
surrogate, and so can a JSON answer (`"\\ud800"`), but neither a request payload nor an
Arrow string can: each lone surrogate is sent, and returned, as U+FFFD, and a high/low
pair as the character it encodes.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from aiquery.endpoints.registry import Endpoint
from aiquery.errors import ConfigError
from aiquery.protocols.common import (
    BATCHED_TASKS,
    CHAT,
    COMPLETIONS,
    CUSTOM,
    EMBEDDINGS,
    ChatRequest,
    ChatResult,
    CompletionRequest,
    CompletionResult,
    CustomRequest,
    CustomResult,
    EmbeddingRequest,
    EmbeddingResult,
    Image,
    Message,
    ProtocolError,
    Usage,
    estimate_tokens,
)
from aiquery.protocols.table import protocol
from aiquery.protocols.tags import TAGS_HEADER, encode_request_tags
from aiquery.version import __version__

USER_AGENT = f"aiquery/{__version__}"

Encode = Callable[[Sequence[Any]], dict[str, Any]]
Decode = Callable[[Any, Sequence[Any]], tuple[list[Any], Usage]]
Read = Callable[[bytes], Any]


@dataclass(frozen=True, slots=True)
class Prompt:
    """One chat row that is more than a string: an AI function's system prompt, or
    ai_query's images (`files =>`). A plain string is a prompt too."""

    text: str
    system: str | None = None
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True)
class Wire:
    url: str
    api_type: str  # the usage table's api_type
    headers: Mapping[str, str]
    encode: Encode
    read: Read  # a response body as JSON
    decode: Decode  # that JSON as one output per input, and the usage
    batched: bool  # many inputs per request (embeddings, custom records)
    params: Mapping[str, Any]  # the generation parameters every request carries


def wire_for(
    endpoint: Endpoint, params: Mapping[str, Any], request_tags: Mapping[str, str] | None = None
) -> Wire:
    """The wire format for calling `endpoint` with generation `params` (modelParameters etc.)."""
    spoken = protocol(endpoint.protocol)
    operation = spoken.operation(endpoint.task)
    if operation is None:  # configuration refuses this pair; a hand-built Endpoint may not
        raise ConfigError(
            f"endpoint '{endpoint.name}': protocol {endpoint.protocol} does not serve task {endpoint.task}"
        )
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **spoken.headers}
    if endpoint.token:
        headers.update(spoken.auth[0].headers(endpoint.token.value))
    if request_tags:
        headers[TAGS_HEADER] = encode_request_tags(request_tags)
    task = _TASKS[endpoint.task]
    fixed = dict(params)

    def encode(inputs: Sequence[Any]) -> dict[str, Any]:
        return operation.encode_request(task.request(inputs, endpoint, fixed))

    def decode(body: Any, inputs: Sequence[Any]) -> tuple[list[Any], Usage]:
        return task.outputs(operation.decode_response(body, len(inputs)), inputs)

    return Wire(
        spoken.url(endpoint.base_url, operation, endpoint.model),
        spoken.api_type(operation),
        headers,
        encode,
        json.loads if endpoint.task == CUSTOM else read_json,
        decode,
        endpoint.task in BATCHED_TASKS,
        fixed,
    )


def read_json(body: bytes) -> Any:
    """A response body as JSON, as Python's `json` reads it, at orjson's speed.

    orjson reads the ~550 KB of a 100-vector embeddings answer in 0.4 ms against `json`'s
    1.3, a sixth of a worker's CPU per request in workload D (CPU-bound on 2 cores). What orjson
    refuses and `json` reads (NaN, Infinity, 1e400, a lone surrogate, a BOM, UTF-16) goes
    to `json`, so the answer is the same. One difference remains: orjson reads an integer
    beyond 64 bits as a float. Chat, completion and embedding envelopes hold no such number
    (token counts, indexes), so they use this; a custom model's predictions can, and keep
    `json` (`wire_for`).
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


# --- what ai_query sends and keeps, per task ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Task:
    request: Callable[[Sequence[Any], Endpoint, Mapping[str, Any]], Any]
    outputs: Callable[[Any, Sequence[Any]], tuple[list[Any], Usage]]


def _chat_request(
    inputs: Sequence[Any], endpoint: Endpoint, params: Mapping[str, Any]
) -> ChatRequest:
    prompt, model = inputs[0], endpoint.model
    if not isinstance(prompt, Prompt):
        return ChatRequest((Message("user", _utf8(prompt)),), model, params)
    user = Message("user", _utf8(prompt.text), prompt.images)
    if prompt.system is None:
        return ChatRequest((user,), model, params)
    return ChatRequest((Message("system", _utf8(prompt.system)), user), model, params)


def prompt_text(value: Any) -> str:
    """All the text a chat row sends (what token estimates count)."""
    if isinstance(value, Prompt):
        return (value.system or "") + value.text
    return value if isinstance(value, str) else str(value)


def _chat_outputs(result: ChatResult, inputs: Sequence[Any]) -> tuple[list[Any], Usage]:
    text = _utf8(result.text)
    return [text], _with_estimate(result.usage, prompt_text(inputs[0]), text)


def _completion_outputs(result: CompletionResult, inputs: Sequence[Any]) -> tuple[list[Any], Usage]:
    count = len(result.texts)
    if not count or count % len(inputs):
        raise ProtocolError(f"expected {len(inputs)} completions, the response has {count}")
    # With modelParameters `n`, each prompt has n choices, prompt by prompt: keep the first.
    texts = [_utf8(t) for t in result.texts[:: count // len(inputs)]]
    return texts, _with_estimate(result.usage, "".join(inputs), "".join(texts))


def _embedding_outputs(result: EmbeddingResult, inputs: Sequence[Any]) -> tuple[list[Any], Usage]:
    usage = result.usage
    if usage.estimated:
        usage = Usage(sum(estimate_tokens(t) for t in inputs), 0, estimated=True)
    return list(result.vectors), usage


def _custom_outputs(result: CustomResult, inputs: Sequence[Any]) -> tuple[list[Any], Usage]:
    return _utf8_json(list(result.predictions)), Usage(0, 0, estimated=True)


_TASKS: dict[str, _Task] = {
    CHAT: _Task(_chat_request, _chat_outputs),
    COMPLETIONS: _Task(
        lambda i, endpoint, params: CompletionRequest(tuple(map(_utf8, i)), endpoint.model, params),
        _completion_outputs,
    ),
    EMBEDDINGS: _Task(
        lambda i, endpoint, params: EmbeddingRequest(
            tuple(map(_utf8, i)), endpoint.model, endpoint.encoding_format
        ),
        _embedding_outputs,
    ),
    CUSTOM: _Task(
        lambda i, endpoint, params: CustomRequest(tuple(_utf8_json(r) for r in i)),
        _custom_outputs,
    ),
}


def _with_estimate(usage: Usage, prompt: str, answer: str) -> Usage:
    """Fill counts a server did not report with Databricks' estimate, marked as estimated."""
    if not usage.estimated:
        return usage
    return Usage(estimate_tokens(prompt), estimate_tokens(answer), estimated=True)


def _utf8(text: str) -> str:
    """`text` as UTF-8 can carry it: a lone surrogate becomes U+FFFD, a pair its character."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


_NUMBERS = frozenset({int, float, bool, type(None)})


def _utf8_json(value: Any) -> Any:
    """`value`, any JSON, with every string in it (keys too) made safe by `_utf8`."""
    if isinstance(value, str):
        return _utf8(value)
    if isinstance(value, list):
        # A vector of numbers, the usual large prediction, is checked in C.
        return value if set(map(type, value)) <= _NUMBERS else [_utf8_json(v) for v in value]
    if isinstance(value, dict):
        return {_utf8_json(k): _utf8_json(v) for k, v in value.items()}
    return value


def jsonable(value: Any) -> Any:
    """Spark values JSON has no type for, as model servers expect them in `dataframe_records`:
    dates and timestamps in ISO 8601, decimals as numbers, binary as base64 text."""
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"a request value of type {type(value).__name__} cannot be sent as JSON")


def input_tokens_estimate(inputs: Sequence[Any]) -> int:
    """Tokens a request will consume, for the tokens-per-minute budget, before sending it."""
    return sum(estimate_tokens(prompt_text(i)) for i in inputs)
