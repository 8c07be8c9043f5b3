"""The Anthropic Messages shape (`/ai-gateway/anthropic/v1/messages`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiquery.protocols.common import (
    ChatRequest,
    ChatResult,
    Message,
    ProtocolError,
    Streaming,
    as_object,
    images_of_content,
    reported_or_estimated,
    require,
    text_of_content,
)
from aiquery.protocols.streaming import Event, StreamBody

_PASS_THROUGH = ("temperature", "top_p", "top_k", "stop_sequences")
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}

# Anthropic requires max_tokens; this is what the client sends when the user set none.
DEFAULT_MAX_TOKENS = 4096


def encode_request(request: ChatRequest) -> dict[str, Any]:
    params = dict(request.params)
    params.pop("response_format", None)  # Anthropic has no response_format
    system = [m.content for m in request.messages if m.role == "system"]
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": params.pop("max_tokens", DEFAULT_MAX_TOKENS),
        "messages": [
            {"role": m.role, "content": _content(m)} for m in request.messages if m.role != "system"
        ],
    }
    if system:
        body["system"] = "\n".join(system)
    if "stop" in params:
        stop = params.pop("stop")
        body["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    body.update(params)
    return body


def _content(message: Message) -> Any:
    """A message's content: its text, or image blocks then the text (as Anthropic advises)."""
    if not message.images:
        return message.content
    images = [
        {"type": "image", "source": {"type": "base64", "media_type": i.media_type, "data": i.b64()}}
        for i in message.images
    ]
    return [*images, {"type": "text", "text": message.content}]


def decode_request(raw: Any) -> ChatRequest:
    body = as_object(raw, "the request body")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ProtocolError("'stream' must be true or false")
    max_tokens = require(body, "max_tokens", int, "the request body")
    if max_tokens < 1:
        raise ProtocolError("'max_tokens' must be a positive integer")
    items = require(body, "messages", list, "the request body")
    if not items:
        raise ProtocolError("'messages' must contain at least one message")
    messages: list[Message] = []
    system = body.get("system")
    if system is not None:
        messages.append(Message("system", text_of_content(system, "system")))
    for i, item in enumerate(items):
        item = as_object(item, f"messages[{i}]")
        role = require(item, "role", str, f"messages[{i}]")
        if role not in ("user", "assistant"):
            raise ProtocolError(f"messages[{i}].role must be 'user' or 'assistant'")
        content, at = item.get("content"), f"messages[{i}].content"
        messages.append(Message(role, text_of_content(content, at), images_of_content(content, at)))
    params: dict[str, Any] = {"max_tokens": max_tokens}
    params.update({k: body[k] for k in _PASS_THROUGH if k in body})
    return ChatRequest(tuple(messages), body.get("model"), params, Streaming() if stream else None)


def encode_response(result: ChatResult) -> dict[str, Any]:
    return {
        "id": result.request_id or "msg_local",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": result.text}],
        "model": result.model or "",
        "stop_reason": _STOP_REASONS.get(result.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
        },
    }


def encode_stream(result: ChatResult, pieces: Sequence[str], streaming: Streaming) -> StreamBody:
    """Anthropic's message events: `message_start` (the input tokens), one text block
    opened, a `text_delta` per piece, the block closed, `message_delta` (stop reason and
    output tokens), `message_stop`."""

    def event(kind: str, **fields: Any) -> Event:
        return Event({"type": kind, **fields}, kind)

    started = {**encode_response(result), "content": [], "stop_reason": None}
    started["usage"] = {"input_tokens": result.usage.input_tokens, "output_tokens": 0}
    return StreamBody(
        (
            event("message_start", message=started),
            event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            event("ping"),
        ),
        tuple(
            (event("content_block_delta", index=0, delta={"type": "text_delta", "text": p}),)
            for p in pieces
        ),
        (
            event("content_block_stop", index=0),
            event(
                "message_delta",
                delta={
                    "stop_reason": _STOP_REASONS.get(result.finish_reason, "end_turn"),
                    "stop_sequence": None,
                },
                usage={"output_tokens": result.usage.output_tokens},
            ),
            event("message_stop"),
        ),
    )


def decode_response(raw: Any) -> ChatResult:
    body = as_object(raw, "the response body")
    content = require(body, "content", list, "the response body")
    text = text_of_content(content, "content")
    usage = body.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    counted = reported_or_estimated(usage.get("input_tokens"), usage.get("output_tokens"), text)
    finish = "length" if body.get("stop_reason") == "max_tokens" else "stop"
    return ChatResult(text, finish, counted, request_id=body.get("id"))
