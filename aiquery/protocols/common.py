"""Protocol-neutral request and result shapes shared by the client and the emulator.

Every protocol (Databricks serving invocations, OpenAI chat/embeddings/responses,
Anthropic messages, Gemini generateContent) converts its JSON bodies to and from
these few dataclasses, so the client and the emulator speak through one definition
of each wire format and cannot drift apart.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

# Databricks task names, as `GET /api/2.0/serving-endpoints` reports them.
CHAT = "llm/v1/chat"
COMPLETIONS = "llm/v1/completions"
EMBEDDINGS = "llm/v1/embeddings"
CUSTOM = "custom"
TASKS = (CHAT, COMPLETIONS, EMBEDDINGS, CUSTOM)
# Tasks whose requests carry many inputs (table rows) at once.
BATCHED_TASKS = frozenset({EMBEDDINGS, CUSTOM})
# Databricks' request payload limits: 16 MB for custom models, 4 MB for everything else.
MB = 1024 * 1024
# The client's own id for a request; servers that keep it make both sides' logs match.
REQUEST_ID_HEADER = "x-request-id"


def payload_limit(task: str) -> int:
    """The largest request body, in bytes, an endpoint of `task` accepts."""
    return (16 if task == CUSTOM else 4) * MB


class ProtocolError(ValueError):
    """A body does not have the shape its protocol requires.

    On the emulator this becomes a 400 `INVALID_PARAMETER_VALUE`; on the client an
    unparseable response. The message names the offending field, never its content.
    """


def estimate_tokens(text: str) -> int:
    """Databricks' token estimate for text a model did not count: `(len + 1) // 4`, and at
    least 1 for any non-empty text (a model never reads "hi" as no tokens at all)."""
    return max((len(text) + 1) // 4, 1) if text else 0


@dataclass(frozen=True, slots=True)
class Image:
    """An image sent with a message (ai_query's `files =>`): its bytes and media type."""

    media_type: str  # "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    data: bytes

    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_uri(self) -> str:
        return f"data:{self.media_type};base64,{self.b64()}"


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str
    images: tuple[Image, ...] = ()  # sent after the text, in each protocol's image parts


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    estimated: bool = False  # True when the server did not report counts

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Streaming:
    """A request's ask to have its answer streamed (`"stream": true`, `:streamGenerateContent`)."""

    include_usage: bool = False  # OpenAI chat: a last chunk carries the usage (stream_options)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[Message, ...]
    model: str | None = None
    # Pass-through generation parameters (max_tokens, temperature, response_format, ...),
    # named as in the OpenAI chat API; each protocol renames what it must.
    params: Mapping[str, Any] = field(default_factory=dict)
    # Set when the caller asked for the answer as a stream of server-sent events.
    stream: Streaming | None = None

    @property
    def max_tokens(self) -> int | None:
        value = self.params.get("max_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def response_format(self) -> Mapping[str, Any] | None:
        value = self.params.get("response_format")
        return value if isinstance(value, Mapping) else None


@dataclass(frozen=True, slots=True)
class ChatResult:
    text: str
    finish_reason: str  # "stop" | "length"
    usage: Usage
    model: str | None = None
    request_id: str | None = None
    # Reasoning models (gpt-oss) answer OpenAI-shaped chat with content blocks: this
    # reasoning summary, then the text. None: content is the plain text.
    reasoning: str | None = None


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    prompts: tuple[str, ...]
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CompletionResult:
    texts: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    usage: Usage
    model: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    inputs: tuple[str, ...]
    model: str | None = None
    encoding_format: str = "float"  # "float" | "base64" (OpenAI SDK default)


# An embedding: float32 values as decoded (a numpy array), or Python floats as built.
Vector: TypeAlias = Sequence[float] | npt.NDArray[np.floating[Any]]


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: tuple[Vector, ...]
    usage: Usage
    model: str | None = None
    encoding_format: str = "float"  # as the request asked


@dataclass(frozen=True, slots=True)
class CustomRequest:
    """Input records of a custom model (one per table row), field name → value."""

    records: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class CustomResult:
    predictions: tuple[Any, ...]  # one per record


def token_count(value: Any) -> int | None:
    """A token count as a server reports it: a non-negative JSON integer, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def reported_usage(input_tokens: Any, output_tokens: Any) -> Usage | None:
    """The counts a server reported, or None when they are not counts (estimate instead).

    A missing or null output count is 0: providers omit it when nothing was generated.
    Negative, boolean, fractional or string counts count as unreported, so nonsense is
    never charged to the token budget or written to the usage table.
    """
    counted_in, counted_out = token_count(input_tokens), token_count(output_tokens or 0)
    if counted_in is None or counted_out is None:
        return None
    return Usage(counted_in, counted_out)


def reported_or_estimated(input_tokens: Any, output_tokens: Any, answer: str) -> Usage:
    """The counts a server reported; else 0 in and the estimate of `answer` out, marked
    estimated (the client re-estimates the input from what it sent)."""
    usage = reported_usage(input_tokens, output_tokens)
    return usage if usage is not None else Usage(0, estimate_tokens(answer), estimated=True)


def require(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Return `body[key]` if present with the expected JSON type, else raise ProtocolError."""
    if key not in body:
        raise ProtocolError(f"missing required field '{key}' in {where}")
    value = body[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = " or ".join(t.__name__ for t in _as_tuple(kind))
        raise ProtocolError(f"field '{key}' in {where} must be {names}, got {type(value).__name__}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def as_object(body: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ProtocolError(f"{where} must be a JSON object, got {type(body).__name__}")
    return body


def text_of_content(content: Any, where: str) -> str:
    """Text of an OpenAI/Anthropic message `content`: a string or a list of blocks.

    Text blocks are joined; non-text blocks (images, reasoning) carry no text here.
    """
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") in (
                "text",
                "input_text",
                "output_text",
            ):
                text = block.get("text")
                if not isinstance(text, str):
                    raise ProtocolError(f"a text block in {where} has no string 'text'")
                parts.append(text)
        return "".join(parts)
    raise ProtocolError(f"{where} must be a string or a list of content blocks")


def images_of_content(content: Any, where: str) -> tuple[Image, ...]:
    """The images of an OpenAI, Responses or Anthropic message `content` (data URIs or
    base64 sources; a server that fetched URLs would reach outside loopback)."""
    if not isinstance(content, list):
        return ()
    images = []
    for block in content:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "image_url":
            url = block.get("image_url")
            images.append(_data_uri(url.get("url") if isinstance(url, Mapping) else url, where))
        elif kind == "input_image":
            images.append(_data_uri(block.get("image_url"), where))
        elif kind == "image":
            source = as_object(block.get("source"), f"an image block's source in {where}")
            if source.get("type") != "base64":
                raise ProtocolError(f"an image in {where} must have a base64 source")
            images.append(image_of(source.get("media_type"), source.get("data"), where))
    return tuple(images)


def _data_uri(url: Any, where: str) -> Image:
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        raise ProtocolError(
            f"an image in {where} must be a data: URI (data:image/png;base64,...); URLs are not fetched"
        )
    media_type, data = url[5:].split(";base64,", 1)
    return image_of(media_type, data, where)


def image_of(media_type: Any, data: Any, where: str) -> Image:
    """An image from its media type and base64 text, as requests carry it."""
    if not isinstance(media_type, str) or not isinstance(data, str):
        raise ProtocolError(f"an image in {where} needs a media type and base64 data")
    try:
        return Image(media_type, base64.b64decode(data, validate=True))
    except ValueError:
        raise ProtocolError(f"an image in {where} is not valid base64") from None


_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


def unfenced(text: str) -> str:
    """A model's answer without surrounding whitespace and a ```json fence around it."""
    body = text.strip()
    if match := _FENCE.fullmatch(body):
        return match.group(1).strip()
    return body
