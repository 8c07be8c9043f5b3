"""Where a request goes and what it looks like, per endpoint protocol and task.

A `Wire` turns the inputs of one HTTP request (one prompt, or many texts for embeddings,
or many records for a custom model) into (url, body) and the response body back into one
output per input, using the same `aiquery.protocols` codecs the emulator serves with.

The wire carries only text that UTF-8 can encode. A Python string can hold a lone
surrogate, and so can a JSON answer (`"\\ud800"`), but neither a request payload nor an
Arrow string can: each lone surrogate is sent, and returned, as U+FFFD, and a high/low
pair as the character it encodes.
"""

from __future__ import annotations

import base64
import datetime
import decimal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiquery import __version__
from aiquery.endpoints import Endpoint
from aiquery.errors import ConfigError
from aiquery.protocols import anthropic, gemini, serving
from aiquery.protocols import openai as oai
from aiquery.protocols.common import (
    CHAT,
    COMPLETIONS,
    CUSTOM,
    EMBEDDINGS,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    Message,
    ProtocolError,
    Usage,
    estimate_tokens,
)
from aiquery.protocols.tags import TAGS_HEADER, encode_request_tags

USER_AGENT = f"aiquery/{__version__}"

Encode = Callable[[Sequence[Any]], dict[str, Any]]
Decode = Callable[[Any, Sequence[Any]], tuple[list[Any], Usage]]


@dataclass(frozen=True, slots=True)
class Wire:
    url: str
    api_type: str  # the usage table's api_type
    headers: Mapping[str, str]
    encode: Encode
    decode: Decode
    batched: bool  # many inputs per request (embeddings, custom records)


def wire_for(
    endpoint: Endpoint, params: Mapping[str, Any], request_tags: Mapping[str, str] | None = None
) -> Wire:
    """The wire format for calling `endpoint` with generation `params` (modelParameters etc.)."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    token = endpoint.token.value if endpoint.token else None
    if token:
        if endpoint.protocol == "anthropic":
            headers["x-api-key"] = token
        elif endpoint.protocol == "gemini":
            headers["x-goog-api-key"] = token
        else:
            headers["Authorization"] = f"Bearer {token}"
    if endpoint.protocol == "anthropic":
        headers["anthropic-version"] = "2023-06-01"
    if request_tags:
        headers[TAGS_HEADER] = encode_request_tags(request_tags)
    url, api_type, encode, decode, batched = _route(endpoint, dict(params))
    return Wire(url, api_type, headers, encode, decode, batched)


def _route(endpoint: Endpoint, params: dict[str, Any]) -> tuple[str, str, Encode, Decode, bool]:
    base, model, task, protocol = (
        endpoint.base_url,
        endpoint.model,
        endpoint.task,
        endpoint.protocol,
    )

    def chat(inputs: Sequence[Any]) -> ChatRequest:
        return ChatRequest((Message("user", _utf8(inputs[0])),), model, params)

    def decode_chat(parse: Callable[[Any], Any]) -> Decode:
        def decode(body: Any, inputs: Sequence[Any]) -> tuple[list[Any], Usage]:
            result = parse(body)
            text = _utf8(result.text)
            return [text], _with_estimate(result.usage, inputs[0], text)

        return decode

    if protocol in ("databricks", "openai"):
        # Both speak the OpenAI bodies; Databricks invocations name the model in the URL.
        with_model = protocol == "openai"
        shaped: dict[str, tuple[str, Encode, Decode, bool]] = {
            CHAT: (
                "chat/completions",
                lambda i: oai.encode_chat_request(chat(i), with_model=with_model),
                decode_chat(oai.decode_chat_response),
                False,
            ),
            COMPLETIONS: (
                "completions",
                lambda i: oai.encode_completion_request(
                    CompletionRequest(tuple(map(_utf8, i)), model, params), with_model=with_model
                ),
                _decode_completions,
                False,
            ),
            EMBEDDINGS: (
                "embeddings",
                lambda i: oai.encode_embedding_request(
                    EmbeddingRequest(tuple(map(_utf8, i)), model), with_model=with_model
                ),
                _decode_embeddings,
                True,
            ),
        }
        if protocol == "databricks":
            url = f"{base}/serving-endpoints/{model}/invocations"
            if task == CUSTOM:
                return (
                    url,
                    "serving-endpoints/invocations",
                    lambda i: serving.encode_request([_utf8_json(r) for r in i]),
                    _decode_custom,
                    True,
                )
            _, encode, decode, batched = shaped[task]
            return (url, "serving-endpoints/invocations", encode, decode, batched)
        if task in shaped:
            path, encode, decode, batched = shaped[task]
            return (f"{base}/{path}", f"openai/v1/{path}", encode, decode, batched)
    if protocol == "anthropic" and task == CHAT:
        return (
            f"{base}/v1/messages",
            "anthropic/v1/messages",
            lambda i: anthropic.encode_request(chat(i)),
            decode_chat(anthropic.decode_response),
            False,
        )
    if protocol == "gemini" and task == CHAT:
        return (
            f"{base}/v1beta/models/{model}:generateContent",
            "gemini/v1beta/generateContent",
            lambda i: gemini.encode_request(chat(i)),
            decode_chat(gemini.decode_response),
            False,
        )
    raise ConfigError(f"endpoint '{endpoint.name}': protocol {protocol} does not serve task {task}")


def _with_estimate(usage: Usage, prompt: str, answer: str) -> Usage:
    """Fill counts a server did not report with Databricks' estimate, marked as estimated."""
    if not usage.estimated:
        return usage
    return Usage(estimate_tokens(prompt), estimate_tokens(answer), estimated=True)


def _decode_completions(body: Any, inputs: Sequence[Any]) -> tuple[list[Any], Usage]:
    result = oai.decode_completion_response(body)
    count = len(result.texts)
    if not count or count % len(inputs):
        raise ProtocolError(f"expected {len(inputs)} completions, the response has {count}")
    # With modelParameters `n`, each prompt has n choices, prompt by prompt: keep the first.
    texts = [_utf8(t) for t in result.texts[:: count // len(inputs)]]
    return texts, _with_estimate(result.usage, "".join(inputs), "".join(texts))


def _decode_embeddings(body: Any, inputs: Sequence[Any]) -> tuple[list[Any], Usage]:
    result = oai.decode_embedding_response(body, expected=len(inputs))
    usage = result.usage
    if usage.estimated:
        usage = Usage(sum(estimate_tokens(t) for t in inputs), 0, estimated=True)
    return list(result.vectors), usage


def _decode_custom(body: Any, inputs: Sequence[Any]) -> tuple[list[Any], Usage]:
    predictions = serving.decode_response(body, expected=len(inputs))
    return _utf8_json(predictions), Usage(0, 0, estimated=True)


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
    return sum(
        estimate_tokens(i) if isinstance(i, str) else estimate_tokens(str(i)) for i in inputs
    )
