"""The model pipeline of every emulator route.

authenticate → validate request tags → read the body within the payload limit → resolve
the endpoint → decode the request with the route's codec from the protocol table → admit
(rate and concurrency limits) → latency and injected faults → answer from the built-in
model → encode with the same codec, whole or as a paced stream (`serving.streaming`) → log.
Errors use the route's own error bodies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from aiquery.endpoints.catalog import retired, retirement_message
from aiquery.protocols.common import (
    CHAT,
    REQUEST_ID_HEADER,
    ChatRequest,
    ProtocolError,
    Streaming,
    payload_limit,
)
from aiquery.protocols.streaming import pieces
from aiquery.protocols.table import Operation
from aiquery.protocols.tags import TAGS_HEADER, parse_request_tags
from aiquery.serving.answers import Answer, answer, input_tokens
from aiquery.serving.bodies import BodyError, json_body, json_text, read_json
from aiquery.serving.config import EndpointConfig
from aiquery.serving.emulator import Emulator
from aiquery.serving.limits import retry_after_header
from aiquery.serving.requestlog import CLIENT_CLOSED, DROPPED, HUNG, LoggedRequest
from aiquery.serving.streaming import stream

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class Route:
    """One served path: the protocol operations answered there, by the endpoint's task."""

    name: str  # the request log's route, e.g. "mlflow/v1/chat/completions"
    operations: Mapping[str, Operation]  # by task
    error_body: Callable[[int, str], dict[str, Any]]
    provider: str | None = None  # native provider routes serve only that provider's models
    method: str | None = None  # a path ending in `{model}:<method>` serves only that method
    streams: bool = False  # streams every answer (`:streamGenerateContent`), whatever the body
    served: tuple[str, ...] = ()  # every method served at this path, named when one is not


# An answer that took longer than this ends the loop's turn, holding `emulator.model`, so the
# loop reads the requests that arrived before it computes the next answer. asyncio runs every
# handler whose latency has passed in one turn: 128 embedding answers due together (~0.3 s of
# CPU) kept new requests unread, and they came in waves. Chat answers (~0.05 ms) share turns:
# a turn for each cost the emulator a fifth of its chat throughput.
TURN_S = 0.0005


async def serve(
    emulator: Emulator, request: web.Request, route: Route, path_name: str | None
) -> web.StreamResponse:
    """Answer one model request on `route`; every outcome is logged once."""
    # A client's own request id is kept, so its usage rows and this log match one to one.
    started = time.monotonic()
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    entry: dict[str, Any] = {
        "request_id": request_id,
        "time": time.time(),
        "route": route.name,
        "endpoint": None,
        "status": 500,
        "input_tokens": 0,
        "output_tokens": 0,
        "items": 0,
        "request_tags": None,
        "user_agent": request.headers.get("User-Agent"),
        "fault": None,
        "streamed": False,
        "first_byte_ms": None,
    }
    try:
        response = await _serve(emulator, request, route, path_name, started, entry)
    except HttpError as e:
        entry["status"] = e.status
        response = web.json_response(
            route.error_body(e.status, e.message),
            status=e.status,
            headers={**e.headers, REQUEST_ID_HEADER: request_id},
            dumps=json_text,
        )
    except (asyncio.CancelledError, ConnectionError):
        if entry["status"] == 500:  # undecided: gone before an answer, not a server error
            entry["status"] = CLIENT_CLOSED
        raise
    finally:
        if entry["status"] != HUNG:  # a hung request was logged when it started hanging
            emulator.log.add(LoggedRequest(**entry))
    return response


async def _serve(
    emulator: Emulator,
    request: web.Request,
    route: Route,
    path_name: str | None,
    started: float,
    entry: dict[str, Any],
) -> web.StreamResponse:
    method_served = True
    if route.method is not None and path_name is not None:  # models/{model}:{method}
        path_name, sep, method = path_name.partition(":")
        method_served = bool(sep) and method == route.method
    endpoint = emulator.resolve(path_name) if path_name is not None else None
    if endpoint is not None:  # logged even when refused, so client and server logs compare
        entry["endpoint"] = endpoint.name
    if not emulator.authenticated(request.headers):
        raise HttpError(
            401, "Invalid or missing access token. Send 'Authorization: Bearer <token>'."
        )
    if not method_served:
        served = " and ".join(f"':{m}'" for m in route.served or (route.method,))
        raise HttpError(404, f"Only {served} are served here.")
    raw_tags = request.headers.get(TAGS_HEADER)
    if raw_tags is not None:
        try:
            entry["request_tags"] = parse_request_tags(raw_tags)
        except ValueError as e:
            raise HttpError(400, str(e)) from None
    if path_name is not None and endpoint is None:
        raise not_found(emulator, path_name)
    limit = endpoint.payload_limit if endpoint else payload_limit(CHAT)
    try:
        body = await read_json(request, limit)
    except BodyError as e:
        raise HttpError(e.status, e.message) from None
    if endpoint is None:
        model = body.get("model") if isinstance(body, Mapping) else None
        if not isinstance(model, str):
            raise HttpError(400, "missing required field 'model' (the endpoint name)")
        endpoint = emulator.resolve(model)
        if endpoint is None:
            raise not_found(emulator, model)
    entry["endpoint"] = endpoint.name
    if route.provider is not None and endpoint.provider != route.provider:
        raise HttpError(404, f"Model '{endpoint.name}' is not served by the {route.provider} API.")
    operation = route.operations.get(endpoint.task)
    if operation is None:
        raise HttpError(
            400,
            f"Endpoint '{endpoint.name}' has task {endpoint.task}; this route serves {', '.join(route.operations)}.",
        )
    try:
        decoded = operation.decode_request(body, endpoint.name)
    except ProtocolError as e:
        raise HttpError(400, str(e)) from None
    if route.streams and isinstance(decoded, ChatRequest):
        decoded = dataclasses.replace(decoded, stream=Streaming())
    return await _answer(emulator, request, operation, endpoint, decoded, started, entry)


async def _answer(
    emulator: Emulator,
    request: web.Request,
    operation: Operation,
    endpoint: EndpointConfig,
    decoded: Any,
    started: float,
    entry: dict[str, Any],
) -> web.StreamResponse:
    request_id = entry["request_id"]
    streaming = decoded.stream if isinstance(decoded, ChatRequest) else None
    limits = emulator.limits_for(endpoint)
    refusal = limits.admit(input_tokens(decoded))
    if refusal is not None:
        raise HttpError(
            429,
            f"{refusal.reason} for endpoint '{endpoint.name}'. Retry after the delay in Retry-After.",
            retry_after_header(refusal.retry_after_s),
        )
    slots = limits.slots
    if slots is not None:
        await slots.acquire()
    limits.in_flight += 1
    try:
        delay = limits.latency_s()
        if delay:
            await asyncio.sleep(delay)
        fault = limits.draw_fault()
        entry["fault"] = fault
        if fault == "500":
            raise HttpError(500, "Injected internal error (emulator fault knob error_rate_500).")
        if fault == "503":
            raise HttpError(
                503, "Injected: the endpoint is temporarily unavailable (error_rate_503)."
            )
        if fault == "hang" and streaming is None:
            entry["status"] = HUNG
            emulator.log.add(LoggedRequest(**entry))
            await asyncio.sleep(endpoint.faults.hang_seconds)
            raise HttpError(504, "Injected hang ended: the request exceeded the endpoint deadline.")
        if fault == "drop" and streaming is None:
            entry["status"] = DROPPED
            return _drop(request)
        async with emulator.model:
            computing = time.perf_counter()
            try:
                result: Answer = answer(endpoint, decoded, request_id)
            except ValueError as e:  # the model refused its parameters (e.g. response_format)
                raise HttpError(400, str(e)) from None
            if time.perf_counter() - computing > TURN_S:
                await asyncio.sleep(0)  # the turn ends: queued handlers wait for the next one
        limits.charge_output(result.output_tokens)
        entry.update(
            status=200,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            items=result.items,
        )
        if streaming is not None and operation.encode_stream is not None:
            texts = pieces(result.result.text)
            return await stream(
                request,
                operation.encode_stream(result.result, texts, streaming),
                texts,
                endpoint.faults,
                fault,
                entry,
                started,
                lambda: emulator.log.add(LoggedRequest(**entry)),
                json_array=_json_array(request),
            )
        generating = endpoint.faults.generation_s(result.output_tokens)
        if generating:
            await asyncio.sleep(generating)
        body = json_body(operation.encode_response(result.result))
        if fault == "malformed":  # cut at a character, so the body is still UTF-8
            text = body.decode()
            body = text[: max(1, len(text) // 2)].encode()
        return web.Response(
            body=body,
            content_type="application/json",
            charset="utf-8",
            headers={REQUEST_ID_HEADER: request_id},
        )
    finally:
        limits.in_flight -= 1
        if slots is not None:
            slots.release()


def _json_array(request: web.Request) -> bool:
    """Gemini streams a JSON array unless the client asks for server-sent events (`alt=sse`)."""
    path = request.path.rstrip("/")
    return path.endswith(":streamGenerateContent") and request.query.get("alt") != "sse"


def not_found(emulator: Emulator, name: str) -> HttpError:
    gone = retired(name)
    if gone is not None:
        return HttpError(404, retirement_message(name, gone))
    known = ", ".join(sorted(emulator.endpoints)[:5])
    return HttpError(
        404,
        f"Endpoint '{name}' does not exist. Known endpoints include: {known}, ... "
        "(GET /api/2.0/serving-endpoints lists them all).",
    )


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering (the emulator's dropped-connection fault)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # aiohttp stops handling this request quietly
