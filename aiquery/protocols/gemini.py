"""The Gemini generateContent shape (`/ai-gateway/gemini/v1beta/models/{model}:generateContent`,
streamed at `:streamGenerateContent`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiquery.protocols.common import (
    ChatRequest,
    ChatResult,
    Image,
    Message,
    ProtocolError,
    Streaming,
    as_object,
    image_of,
    reported_or_estimated,
    require,
)
from aiquery.protocols.streaming import Event, StreamBody

_ROLE_TO_GEMINI = {"user": "user", "assistant": "model"}
_CONFIG_TO_PARAM = {
    "maxOutputTokens": "max_tokens",
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "stopSequences": "stop",
}


def encode_request(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contents": [
            {
                "role": _ROLE_TO_GEMINI.get(m.role, "user"),
                "parts": [
                    {"text": m.content},
                    *(
                        {"inline_data": {"mime_type": i.media_type, "data": i.b64()}}
                        for i in m.images
                    ),
                ],
            }
            for m in request.messages
            if m.role != "system"
        ]
    }
    system = [m.content for m in request.messages if m.role == "system"]
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n".join(system)}]}
    config: dict[str, Any] = {}
    for key, param in _CONFIG_TO_PARAM.items():
        if param in request.params:
            config[key] = request.params[param]
    fmt = request.response_format
    if fmt is not None and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = fmt.get("json_schema")
        if isinstance(schema, Mapping) and "schema" in schema:
            config["responseJsonSchema"] = schema["schema"]
    if config:
        body["generationConfig"] = config
    return body


def decode_request(raw: Any, model: str) -> ChatRequest:
    body = as_object(raw, "the request body")
    contents = require(body, "contents", list, "the request body")
    if not contents:
        raise ProtocolError("'contents' must contain at least one item")
    messages: list[Message] = []
    system = body.get("systemInstruction", body.get("system_instruction"))
    if isinstance(system, Mapping):
        messages.append(Message("system", _parts_text(system.get("parts"), "systemInstruction")))
    for i, item in enumerate(contents):
        item = as_object(item, f"contents[{i}]")
        role = item.get("role", "user")
        if role not in ("user", "model"):
            raise ProtocolError(f"contents[{i}].role must be 'user' or 'model'")
        parts, at = item.get("parts"), f"contents[{i}].parts"
        speaker = "assistant" if role == "model" else "user"
        messages.append(Message(speaker, _parts_text(parts, at), _parts_images(parts, at)))
    params: dict[str, Any] = {}
    config = body.get("generationConfig", body.get("generation_config"))
    if isinstance(config, Mapping):
        for key, param in _CONFIG_TO_PARAM.items():
            if key in config:
                params[param] = config[key]
        params.update(_response_format(config))
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ProtocolError("'generationConfig.maxOutputTokens' must be a positive integer")
    return ChatRequest(tuple(messages), model, params)


def encode_response(result: ChatResult) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": result.text}]},
                "finishReason": "MAX_TOKENS" if result.finish_reason == "length" else "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": result.usage.input_tokens,
            "candidatesTokenCount": result.usage.output_tokens,
            "totalTokenCount": result.usage.total_tokens,
        },
        "modelVersion": result.model or "",
        "responseId": result.request_id or "",
    }


def encode_stream(result: ChatResult, pieces: Sequence[str], streaming: Streaming) -> StreamBody:
    """`:streamGenerateContent` answers: a response per piece with its text, then one that
    carries the finish reason and the whole usage."""
    whole = encode_response(result)
    running = {"promptTokenCount": result.usage.input_tokens}

    def chunk(text: str, finish: str | None, usage: dict[str, Any]) -> Event:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        return Event({**whole, "candidates": [candidate], "usageMetadata": usage})

    finish = whole["candidates"][0]["finishReason"]
    return StreamBody(
        (),
        tuple((chunk(p, None, running),) for p in pieces),
        (chunk("", finish, whole["usageMetadata"]),),
    )


def decode_response(raw: Any) -> ChatResult:
    body = as_object(raw, "the response body")
    candidates = require(body, "candidates", list, "the response body")
    if not candidates:
        raise ProtocolError("the response has no candidates")
    first = as_object(candidates[0], "candidates[0]")
    content = as_object(first.get("content", {}), "candidates[0].content")
    text = _parts_text(content.get("parts", []), "candidates[0].content.parts")
    meta = body.get("usageMetadata")
    meta = meta if isinstance(meta, Mapping) else {}
    usage = reported_or_estimated(
        meta.get("promptTokenCount"), meta.get("candidatesTokenCount"), text
    )
    finish = "length" if first.get("finishReason") == "MAX_TOKENS" else "stop"
    return ChatResult(text, finish, usage, request_id=body.get("responseId"))


def _parts_text(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise ProtocolError(f"{where} must be a list of parts")
    texts = []
    for part in parts:
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "".join(texts)


def _parts_images(parts: Any, where: str) -> tuple[Image, ...]:
    """The `inline_data` (or `inlineData`) images of a content's parts."""
    images = []
    for part in parts if isinstance(parts, list) else ():
        inline = (
            part.get("inline_data", part.get("inlineData")) if isinstance(part, Mapping) else None
        )
        if isinstance(inline, Mapping):
            media_type = inline.get("mime_type", inline.get("mimeType"))
            images.append(image_of(media_type, inline.get("data"), where))
    return tuple(images)


def _response_format(config: Mapping[str, Any]) -> dict[str, Any]:
    mime = config.get("responseMimeType", config.get("response_mime_type"))
    if mime != "application/json":
        return {}
    schema = config.get("responseJsonSchema", config.get("responseSchema"))
    if isinstance(schema, Mapping):
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": _lower_types(schema)},
            }
        }
    return {"response_format": {"type": "json_object"}}


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI-style schemas spell types in upper case (`OBJECT`); JSON Schema does not."""
    if isinstance(schema, Mapping):
        out = {k: _lower_types(v) for k, v in schema.items()}
        if isinstance(out.get("type"), str):
            out["type"] = out["type"].lower()
        return out
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema
