"""The OpenAI Responses API shape (`/ai-gateway/mlflow/v1/responses`, `/ai-gateway/openai/v1/responses`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiquery.protocols.common import (
    ChatRequest,
    ChatResult,
    Message,
    ProtocolError,
    as_object,
    images_of_content,
    reported_or_estimated,
    require,
    text_of_content,
)

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
    if body.get("stream") is True:
        raise ProtocolError("streaming ('stream': true) is not supported by this endpoint")
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
    return ChatRequest(tuple(messages), model if isinstance(model, str) else None, params)


def encode_response(result: ChatResult) -> dict[str, Any]:
    truncated = result.finish_reason == "length"
    return {
        "id": result.request_id or "resp_local",
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if truncated else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "model": result.model or "",
        "output": [
            {
                "type": "message",
                "id": "msg_" + (result.request_id or "local"),
                "status": "incomplete" if truncated else "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": result.text, "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "total_tokens": result.usage.total_tokens,
        },
    }


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
