"""Deterministic built-in "local models" that the emulator serves.

Stand-ins, not language models: each output is a pure function of the input (hashing is
blake2b or crc32, never `hash()`, so it is stable across processes), costs microseconds, and is
visibly derived from the input.

`chat_reply` answers the last user message (the last message if none is from the user;
system messages are ignored). Text mode is an extractive "summary": a short instruction
prefix ending in ": " (`"Summarize: <text>"`, at most 12 words, no newline) is dropped and
the answer is the first sentence of the rest, capped at 40 words, whitespace-normalised;
an empty prompt answers "(empty prompt)". `json_object` mode wraps it as
`{"answer": ..., "word_count": <words in the text>}`. `json_schema` mode generates an
instance that validates against the schema: strings carry the answer (array items carry
the text's sentences or keywords), enums pick the option sharing most words with the
prompt, numbers and booleans come from a hash of the prompt and the field's path within
the schema's bounds; `$ref`, `allOf` (merged), `anyOf`/`oneOf` (first non-null branch),
type lists, length/item bounds and integer `multipleOf` are honoured, other keywords
ignored.

`complete` repeats the prompt's last 12 words. With `max_tokens`, a reply over the limit
(by `estimate_tokens`) is cut to `max_tokens * 4` characters and finishes with "length";
cut JSON may be invalid, as from a real model. `custom_predict` sums a record's numbers,
else answers its text. Embeddings are `aiquery.serving.embedding`.

An AI function's prompt (`aiquery.protocols.tasks`) gets its task's answer
(`task_models`); a user message with images gets their description from their headers
("A PNG image of 64x48 pixels."), as a vision model would describe them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiquery.protocols.common import Image, Message, ProtocolError, estimate_tokens
from aiquery.protocols.images import sniff
from aiquery.protocols.tasks import read_task
from aiquery.serving.schema_instance import InstanceBuilder
from aiquery.serving.task_models import answer_task
from aiquery.serving.wording import SENTENCE_END, cap_words

EMPTY_ANSWER = "(empty prompt)"
_MAX_PREFIX_WORDS = 12
_CONTINUATION_WORDS = 12

_INSTRUCTION = re.compile(r"\s*([^:\n]*):\s")
# Array strings under keys like these get keywords, not sentences.
_RESPONSE_TYPES = ("text", "json_object", "json_schema")


@dataclass(frozen=True, slots=True)
class Reply:
    """One local-model output: its text, why it stopped, and its estimated token count."""

    text: str
    finish_reason: str  # "stop" | "length"
    output_tokens: int  # estimate_tokens(text) of the returned, possibly truncated, text


def chat_reply(
    messages: Sequence[Message],
    *,
    response_format: Mapping[str, Any] | None = None,
    max_tokens: int | None = None,
) -> Reply:
    """Answer the last user message as text, a JSON object or a JSON-schema instance.

    Raises `ProtocolError` (a `ValueError`) when `response_format` is malformed or
    `max_tokens` is not a positive integer.
    """
    limit = _check_max_tokens(max_tokens)
    kind, schema = _parse_response_format(response_format)
    prompt = _last_user_text(messages)
    task = read_task(messages)
    if task is not None:  # an AI function's prompt: its answer, in its shape
        return _finish(json.dumps(answer_task(task, prompt), ensure_ascii=False), limit)
    source = _strip_instruction(prompt)
    images = _last_user_images(messages)
    answer = describe_images(images) if images else _first_sentence(source)
    if kind == "json_object":
        body: Any = {"answer": answer, "word_count": len(source.split())}
        text = json.dumps(body, ensure_ascii=False)
    elif kind == "json_schema":
        instance = InstanceBuilder(schema, prompt, source, answer).build()
        text = json.dumps(instance, ensure_ascii=False)
    else:
        text = answer
    return _finish(text, limit)


def complete(prompt: str, *, max_tokens: int | None = None) -> Reply:
    """Continue `prompt` deterministically by repeating its last words."""
    limit = _check_max_tokens(max_tokens)
    words = prompt.split()
    if not words:
        return _finish(EMPTY_ANSWER, limit)
    tail = " ".join(words[-_CONTINUATION_WORDS:])
    return _finish(tail if prompt[-1].isspace() else " " + tail, limit)


def custom_predict(record: Mapping[str, Any]) -> Any:
    """Predict for one `dataframe_records` row of a custom model endpoint.

    A record with numeric fields predicts their sum as a float. Otherwise the prediction
    is the text `chat_reply` gives for the record's string values joined by spaces.
    """
    if not isinstance(record, Mapping):
        raise ProtocolError("each dataframe record must be a JSON object")
    numbers = [v for v in record.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        return float(sum(numbers))
    text = " ".join(v for v in record.values() if isinstance(v, str))
    return chat_reply([Message("user", text)]).text


def _check_max_tokens(max_tokens: Any) -> int | None:
    if max_tokens is None:
        return None
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise ProtocolError("max_tokens must be a positive integer")
    return max_tokens


def _parse_response_format(fmt: Any) -> tuple[str, Mapping[str, Any]]:
    if fmt is None:
        return "text", {}
    if not isinstance(fmt, Mapping):
        raise ProtocolError("response_format must be an object")
    kind = fmt.get("type")
    if kind not in _RESPONSE_TYPES:
        raise ProtocolError("response_format.type must be text, json_object or json_schema")
    if kind != "json_schema":
        return kind, {}
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, Mapping):
        raise ProtocolError("response_format.json_schema must be an object with an object 'schema'")
    return kind, schema


def _finish(text: str, limit: int | None) -> Reply:
    if limit is not None and estimate_tokens(text) > limit:
        text = text[: limit * 4]
        return Reply(text, "length", estimate_tokens(text))
    return Reply(text, "stop", estimate_tokens(text))


def _last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return messages[-1].content if messages else ""


def _last_user_images(messages: Sequence[Message]) -> tuple[Image, ...]:
    users = [m for m in messages if m.role == "user"]
    return users[-1].images if users else ()


def describe_images(images: Sequence[Image]) -> str:
    """What a vision model sees, from each image's header ("A PNG image of 64x48 pixels.")."""
    described = []
    for image in images:
        info = sniff(image.data)
        described.append(
            f"A {info.format} image of {info.width}x{info.height} pixels."
            if info is not None
            else "An image that cannot be decoded."
        )
    return " ".join(described)


def _strip_instruction(prompt: str) -> str:
    match = _INSTRUCTION.match(prompt)
    if match and len(match.group(1).split()) <= _MAX_PREFIX_WORDS:
        rest = prompt[match.end() :]
        if rest.strip():
            return rest
    return prompt


def _first_sentence(source: str) -> str:
    normalised = " ".join(source.split())
    if not normalised:
        return EMPTY_ANSWER
    return cap_words(SENTENCE_END.split(normalised, maxsplit=1)[0])
