"""The OpenAI Responses API shape (`/ai-gateway/mlflow/v1/responses`, `/ai-gateway/openai/v1/responses`)."""

from __future__ import annotations

import itertools
import time
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

_PASS_THROUGH = ("temperature", "top_p", "stop")


def encode_request(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "input": [
            {
                "role": m.role,
                "content": [
                    {"type": _part_type(m.role), "text": m.content},
                    *({"type": "input_image", "image_url": i.data_uri()} for i in m.images),
                ],
            }
            for m in request.messages
        ],
    }
    params = dict(request.params)
    if "max_tokens" in params:
        body["max_output_tokens"] = params.pop("max_tokens")
    fmt = params.pop("response_format", None)
    if isinstance(fmt, Mapping):
        body["text"] = {"format": _text_format(fmt)}
    body.update(params)
    return body


def decode_request(raw: Any) -> ChatRequest:
    body = as_object(raw, "the request body")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ProtocolError("'stream' must be true or false")
    value = require(body, "input", (str, list), "the request body")
    messages: list[Message] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        messages.append(Message("system", instructions))
    if isinstance(value, str):
        messages.append(Message("user", value))
    else:
        for i, item in enumerate(value):
            item = as_object(item, f"input[{i}]")
            role = item.get("role", "user")
            if not isinstance(role, str):
                raise ProtocolError(f"input[{i}].role must be a string")
            content, at = item.get("content"), f"input[{i}].content"
            messages.append(
                Message(role, text_of_content(content, at), images_of_content(content, at))
            )
    if not messages:
        raise ProtocolError("'input' must not be empty")
    params: dict[str, Any] = {k: body[k] for k in _PASS_THROUGH if k in body}
    max_output = body.get("max_output_tokens")
    if max_output is not None:
        if not isinstance(max_output, int) or isinstance(max_output, bool) or max_output < 1:
            raise ProtocolError("'max_output_tokens' must be a positive integer")
        params["max_tokens"] = max_output
    text = body.get("text")
    if isinstance(text, Mapping) and isinstance(text.get("format"), Mapping):
        params["response_format"] = _response_format(text["format"])
    model = body.get("model")
    return ChatRequest(
        tuple(messages),
        model if isinstance(model, str) else None,
        params,
        Streaming() if stream else None,
    )


def encode_response(result: ChatResult) -> dict[str, Any]:
    truncated = result.finish_reason == "length"
    return {
        "id": result.request_id or "resp_local",
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if truncated else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "model": result.model or "",
        "output": [_message(result, result.text, "incomplete" if truncated else "completed")],
        "usage": {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "total_tokens": result.usage.total_tokens,
        },
    }


def _message(result: ChatResult, text: str | None, status: str) -> dict[str, Any]:
    """The answer's output message; `text=None` while it is still empty (a stream's start)."""
    return {
        "type": "message",
        "id": "msg_" + (result.request_id or "local"),
        "status": status,
        "role": "assistant",
        "content": [] if text is None else [_text_part(text)],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def encode_stream(result: ChatResult, pieces: Sequence[str], streaming: Streaming) -> StreamBody:
    """The Responses API's typed events, each numbered by `sequence_number`: created, the
    output message and its text part opening, one `output_text.delta` per piece, their
    `done` events, then `response.completed` (`incomplete` when cut at max_output_tokens)
    with the whole response."""
    numbers = itertools.count()
    final = encode_response(result)
    item = final["output"][0]
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}

    def event(kind: str, **fields: Any) -> Event:
        return Event({"type": kind, "sequence_number": next(numbers), **fields}, kind)

    started = {**final, "status": "in_progress", "incomplete_details": None, "output": []}
    started["usage"] = None
    opening = (
        event("response.created", response=started),
        event("response.in_progress", response=started),
        event(
            "response.output_item.added", output_index=0, item=_message(result, None, "in_progress")
        ),
        event("response.content_part.added", **at, part=_text_part("")),
    )
    deltas = tuple(
        (event("response.output_text.delta", **at, delta=p, logprobs=[]),) for p in pieces
    )
    closing = (
        event("response.output_text.done", **at, text=result.text, logprobs=[]),
        event("response.content_part.done", **at, part=_text_part(result.text)),
        event("response.output_item.done", output_index=0, item=item),
        event(f"response.{final['status']}", response=final),
    )
    return StreamBody(opening, deltas, closing)


def decode_response(raw: Any) -> ChatResult:
    body = as_object(raw, "the response body")
    output = require(body, "output", list, "the response body")
    texts = [
        text_of_content(item.get("content"), "output[].content")
        for item in output
        if isinstance(item, Mapping) and item.get("type") == "message"
    ]
    text = "".join(texts)
    usage = body.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    counted = reported_or_estimated(usage.get("input_tokens"), usage.get("output_tokens"), text)
    finish = "length" if body.get("status") == "incomplete" else "stop"
    return ChatResult(text, finish, counted, request_id=body.get("id"))


def _part_type(role: str) -> str:
    return "output_text" if role == "assistant" else "input_text"


def _text_format(fmt: Mapping[str, Any]) -> dict[str, Any]:
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), Mapping):
        return {"type": "json_schema", **fmt["json_schema"]}
    return dict(fmt)


def _response_format(fmt: Mapping[str, Any]) -> dict[str, Any]:
    """Responses `text.format` → chat `response_format`."""
    kind = fmt.get("type")
    if kind == "json_schema":
        inner = {k: v for k, v in fmt.items() if k != "type"}
        return {"type": "json_schema", "json_schema": inner}
    if kind in ("json_object", "text"):
        return {"type": kind}
    raise ProtocolError("text.format.type must be 'text', 'json_object' or 'json_schema'")
