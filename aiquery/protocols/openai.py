"""OpenAI-shaped chat completions, completions and embeddings.

Databricks serving invocations for chat, completions and embeddings use these same
bodies (without `model`), as do `/serving-endpoints/chat/completions`,
`/serving-endpoints/embeddings` and the gateway's `/ai-gateway/mlflow/v1/...` routes.
Each shape has four functions: the client encodes a request and decodes a response,
the emulator decodes a request and encodes a response.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pybase64

from aiquery.protocols.common import (
    ChatRequest,
    ChatResult,
    CompletionRequest,
    CompletionResult,
    EmbeddingRequest,
    EmbeddingResult,
    Message,
    ProtocolError,
    Streaming,
    Usage,
    Vector,
    as_object,
    estimate_tokens,
    images_of_content,
    reported_usage,
    require,
    text_of_content,
    token_count,
)
from aiquery.protocols.streaming import DONE, Event, StreamBody

# Keys of a chat body that belong to the request itself, not to generation parameters.
CHAT_RESERVED = frozenset({"messages", "model", "stream", "stream_options", "prompt", "input"})
_ROLES = frozenset({"system", "user", "assistant", "developer", "tool"})


# --- chat ---------------------------------------------------------------------------


def encode_chat_request(request: ChatRequest, *, with_model: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": m.role, "content": _content(m)} for m in request.messages]
    }
    if with_model and request.model is not None:
        body["model"] = request.model
    body.update(request.params)
    return body


def _content(message: Message) -> Any:
    """A message's content: its text, or text and image parts (vision)."""
    if not message.images:
        return message.content
    images = [{"type": "image_url", "image_url": {"url": i.data_uri()}} for i in message.images]
    return [{"type": "text", "text": message.content}, *images]


def decode_chat_request(raw: Any) -> ChatRequest:
    body = as_object(raw, "the request body")
    items = require(body, "messages", list, "the request body")
    if not items:
        raise ProtocolError("'messages' must contain at least one message")
    messages = []
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        item = as_object(item, where)
        role = require(item, "role", str, where)
        if role not in _ROLES:
            raise ProtocolError(f"{where}.role must be one of {sorted(_ROLES)}, got '{role}'")
        content, at = item.get("content"), f"{where}.content"
        messages.append(Message(role, text_of_content(content, at), images_of_content(content, at)))
    model = body.get("model")
    params = {k: v for k, v in body.items() if k not in CHAT_RESERVED}
    _check_common_params(params)
    return ChatRequest(
        tuple(messages), model if isinstance(model, str) else None, params, _streaming(body)
    )


def _streaming(body: Mapping[str, Any]) -> Streaming | None:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ProtocolError("'stream' must be true or false")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise ProtocolError("'stream_options' is only allowed with 'stream': true")
    options = as_object(options or {}, "stream_options")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise ProtocolError("'stream_options.include_usage' must be true or false")
    return Streaming(include_usage) if stream else None


def encode_chat_response(result: ChatResult) -> dict[str, Any]:
    content: Any = result.text
    if result.reasoning is not None:
        content = [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": result.reasoning}]},
            {"type": "text", "text": result.text},
        ]
    return {
        "id": result.request_id or "chatcmpl-local",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model or "",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": _usage_body(result.usage),
    }


def decode_chat_response(raw: Any) -> ChatResult:
    body = as_object(raw, "the response body")
    choices = require(body, "choices", list, "the response body")
    if not choices:
        raise ProtocolError("the response has no choices")
    choice = as_object(choices[0], "choices[0]")
    message = as_object(require(choice, "message", Mapping, "choices[0]"), "choices[0].message")
    text = text_of_content(message.get("content"), "choices[0].message.content")
    finish = choice.get("finish_reason")
    model = body.get("model")
    return ChatResult(
        text=text,
        finish_reason=finish if isinstance(finish, str) else "stop",
        usage=decode_usage(body.get("usage"), prompt_text="", output_text=text),
        model=model if isinstance(model, str) else None,
        request_id=body.get("id") if isinstance(body.get("id"), str) else None,
    )


def encode_chat_stream(
    result: ChatResult, pieces: Sequence[str], streaming: Streaming
) -> StreamBody:
    """Chat completion chunks: the role, one content delta per piece, the finish reason,
    the usage when `stream_options.include_usage` asked for it, then `[DONE]`."""
    head = {
        "id": result.request_id or "chatcmpl-local",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": result.model or "",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> Event:
        return Event({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    closing = [chunk({}, result.finish_reason)]
    if streaming.include_usage:
        closing.append(Event({**head, "choices": [], "usage": _usage_body(result.usage)}))
    return StreamBody(
        (chunk({"role": "assistant", "content": ""}),),
        tuple((chunk({"content": piece}),) for piece in pieces),
        (*closing, Event(DONE)),
    )


# --- completions --------------------------------------------------------------------


def encode_completion_request(request: CompletionRequest, *, with_model: bool) -> dict[str, Any]:
    prompt: str | list[str] = (
        request.prompts[0] if len(request.prompts) == 1 else list(request.prompts)
    )
    body: dict[str, Any] = {"prompt": prompt}
    if with_model and request.model is not None:
        body["model"] = request.model
    body.update(request.params)
    return body


def decode_completion_request(raw: Any) -> CompletionRequest:
    body = as_object(raw, "the request body")
    prompt = require(body, "prompt", (str, list), "the request body")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ProtocolError("'prompt' must be a string or a non-empty list of strings")
    if body.get("stream") is True:
        raise ProtocolError(
            "streaming ('stream': true) is served for chat only; use the chat completions API"
        )
    model = body.get("model")
    params = {k: v for k, v in body.items() if k not in CHAT_RESERVED}
    _check_common_params(params)
    return CompletionRequest(tuple(prompts), model if isinstance(model, str) else None, params)


def encode_completion_response(result: CompletionResult) -> dict[str, Any]:
    return {
        "id": result.request_id or "cmpl-local",
        "object": "text_completion",
        "created": int(time.time()),
        "model": result.model or "",
        "choices": [
            {"index": i, "text": text, "finish_reason": reason, "logprobs": None}
            for i, (text, reason) in enumerate(
                zip(result.texts, result.finish_reasons, strict=True)
            )
        ],
        "usage": _usage_body(result.usage),
    }


def decode_completion_response(raw: Any) -> CompletionResult:
    body = as_object(raw, "the response body")
    choices = require(body, "choices", list, "the response body")
    ordered = sorted((as_object(c, "choices[i]") for c in choices), key=_choice_index)
    texts = tuple(str(c.get("text", "")) for c in ordered)
    reasons = tuple(str(c.get("finish_reason") or "stop") for c in ordered)
    usage = decode_usage(body.get("usage"), prompt_text="", output_text="".join(texts))
    return CompletionResult(texts, reasons, usage)


def _choice_index(choice: Mapping[str, Any]) -> int:
    index = choice.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool):
        raise ProtocolError("choices[i].index must be an integer")
    return index


# --- embeddings ---------------------------------------------------------------------


def encode_embedding_request(request: EmbeddingRequest, *, with_model: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"input": list(request.inputs)}
    if with_model and request.model is not None:
        body["model"] = request.model
    if request.encoding_format != "float":
        body["encoding_format"] = request.encoding_format
    return body


def decode_embedding_request(raw: Any) -> EmbeddingRequest:
    body = as_object(raw, "the request body")
    value = require(body, "input", (str, list), "the request body")
    inputs = [value] if isinstance(value, str) else value
    if not inputs or not all(isinstance(v, str) for v in inputs):
        raise ProtocolError("'input' must be a string or a non-empty list of strings")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise ProtocolError("'encoding_format' must be 'float' or 'base64'")
    model = body.get("model")
    return EmbeddingRequest(tuple(inputs), model if isinstance(model, str) else None, fmt)


def encode_embedding_response(result: EmbeddingResult) -> dict[str, Any]:
    def encode(vector: Vector) -> Any:
        if result.encoding_format == "base64":
            return pybase64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
        return vector.tolist() if isinstance(vector, np.ndarray) else list(vector)

    return {
        "object": "list",
        "model": result.model or "",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v)}
            for i, v in enumerate(result.vectors)
        ],
        "usage": {
            "prompt_tokens": result.usage.input_tokens,
            "total_tokens": result.usage.input_tokens,
        },
    }


def decode_embedding_response(raw: Any, expected: int) -> EmbeddingResult:
    body = as_object(raw, "the response body")
    data = require(body, "data", list, "the response body")
    if len(data) != expected:
        raise ProtocolError(f"expected {expected} embeddings, the response has {len(data)}")
    vectors: list[Vector | None] = [None] * expected
    for item in data:
        item = as_object(item, "data[i]")
        index = item.get("index")
        if not isinstance(index, int) or not 0 <= index < expected or vectors[index] is not None:
            raise ProtocolError("embedding indexes are not a permutation of the inputs")
        vectors[index] = _vector(item.get("embedding"))
    usage = body.get("usage")
    tokens = token_count(usage.get("prompt_tokens")) if isinstance(usage, Mapping) else None
    return EmbeddingResult(
        tuple(v for v in vectors if v is not None),
        Usage(tokens, 0) if tokens is not None else Usage(0, 0, estimated=True),
    )


def _vector(value: Any) -> Vector:
    """One embedding as float32 values. base64 (what aiquery asks for) is read in place,
    with no Python float per value: 100 vectors of 1,024 decode in ~0.1 ms with pybase64's
    SIMD decoder (~1.7 ms with the standard library's, ~40 ms as JSON numbers)."""
    if isinstance(value, str):
        try:
            raw = pybase64.b64decode(value, validate=True)
        except ValueError:
            raise ProtocolError("a base64 embedding is not valid base64") from None
        if len(raw) % 4:
            raise ProtocolError("a base64 embedding is not a whole number of float32 values")
        return np.frombuffer(raw, dtype="<f4")
    # set(map(type, ...)) runs in C: 5x faster than a generator per value.
    if isinstance(value, list) and set(map(type, value)) <= {float, int}:
        try:
            return np.array(value, dtype=np.float32)
        except OverflowError:  # an integer past the float range
            raise ProtocolError("an embedding value is out of the float range") from None
    raise ProtocolError("an embedding is neither a list of numbers nor base64")


# --- shared -------------------------------------------------------------------------


def _usage_body(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def decode_usage(raw: Any, *, prompt_text: str, output_text: str) -> Usage:
    """Token counts from an OpenAI `usage` object, else the Databricks estimate."""
    if isinstance(raw, Mapping):
        usage = reported_usage(
            raw.get("prompt_tokens", raw.get("input_tokens")),
            raw.get("completion_tokens", raw.get("output_tokens")),
        )
        if usage is not None:
            return usage
    return Usage(estimate_tokens(prompt_text), estimate_tokens(output_text), estimated=True)


def _check_common_params(params: Mapping[str, Any]) -> None:
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise ProtocolError("'max_tokens' must be a positive integer")
    temperature = params.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 2
    ):
        raise ProtocolError("'temperature' must be a number between 0 and 2")
