"""Writing a streamed answer: its events paced like a model generating them, and faults mid-stream.

The route's codec (`Operation.encode_stream`) shapes the events; this module only decides
when each is written. The opening events go out at once (the client's first byte), the
first piece of text after `time_to_first_token_ms`, each later piece when the tokens
before it have been generated at `tokens_per_second`, then the closing events. A hang,
drop or malformed fault drawn for the request strikes after `stream_fault_after_chunks`
pieces (half of them by default): the stream stalls, the connection is cut, or one
event's data is cut short (no longer JSON) and the stream ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from aiquery.protocols.common import REQUEST_ID_HEADER
from aiquery.protocols.streaming import CONTENT_TYPE, Event, StreamBody, data_text, frame
from aiquery.serving.config import Faults
from aiquery.serving.requestlog import CLIENT_CLOSED, DROPPED, HUNG


class _JsonArray:
    """Gemini's `:streamGenerateContent` without `alt=sse`: one JSON array, written as it grows."""

    content_type = "application/json"

    def __init__(self) -> None:
        self.first = True

    def __call__(self, event: Event) -> bytes:
        head, self.first = ("[" if self.first else ",\r\n"), False
        return (head + data_text(event)).encode()

    def end(self) -> bytes:
        return b"[]" if self.first else b"]"


class _Sse:
    content_type = CONTENT_TYPE

    def __call__(self, event: Event) -> bytes:
        return frame(event)

    def end(self) -> bytes:
        return b""


async def stream(
    request: web.Request,
    body: StreamBody,
    texts: list[str],
    faults: Faults,
    fault: str | None,
    entry: dict[str, Any],
    started: float,
    on_hang: Callable[[], None],
    *,
    json_array: bool = False,
) -> web.StreamResponse:
    """Write `body` to the client; `texts` are its pieces (for pacing), `started` the
    request's arrival (`time.monotonic()`), `entry` its log entry (updated in place)."""
    framing: _Sse | _JsonArray = _JsonArray() if json_array else _Sse()
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{framing.content_type}; charset=utf-8",
            "Cache-Control": "no-cache",
            REQUEST_ID_HEADER: entry["request_id"],
        }
    )
    entry["streamed"] = True
    # The pieces' events, then the closing ones (a fault may strike before either).
    groups = [*body.pieces, body.closing]
    strike = _strike_at(faults, fault, len(body.pieces))
    loop = asyncio.get_running_loop()
    try:
        await response.prepare(request)
        for event in body.opening:
            await response.write(framing(event))
        entry["first_byte_ms"] = round((time.monotonic() - started) * 1000, 3)
        begun, chars = loop.time(), 0
        for i, group in enumerate(groups):
            if i == strike:
                return await _fault(
                    request, response, framing, group, fault, faults, entry, on_hang
                )
            # Pacing counts tokens as the estimate does, a quarter per character.
            wait = begun + faults.generation_s(chars / 4) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            for event in group:
                await response.write(framing(event))
            chars += len(texts[i]) if i < len(texts) else 0
        await response.write(framing.end())
        await response.write_eof()
        return response
    except (ConnectionError, asyncio.CancelledError):
        if entry["status"] == 200:  # the client went away mid-stream
            entry["status"] = CLIENT_CLOSED
        raise


def _strike_at(faults: Faults, fault: str | None, count: int) -> int | None:
    """Before which piece a mid-stream fault strikes (`count`: before the closing events)."""
    if fault not in ("hang", "drop", "malformed"):
        return None
    after = faults.stream_fault_after_chunks
    return min(count // 2 if after is None else after, count)


async def _fault(
    request: web.Request,
    response: web.StreamResponse,
    framing: _Sse | _JsonArray,
    next_events: tuple[Event, ...],
    fault: str | None,
    faults: Faults,
    entry: dict[str, Any],
    on_hang: Callable[[], None],
) -> web.StreamResponse:
    if fault == "malformed":  # one event whose data is cut short, then the end of the stream
        event = next_events[0]
        text = data_text(event)
        await response.write(framing(Event(text[: len(text) // 2 or 1], event.name)))
        await response.write_eof()
        return response
    if fault == "hang":
        entry["status"] = HUNG
        on_hang()  # logged now: a stalled stream may never end
        await asyncio.sleep(faults.hang_seconds)
    else:
        entry["status"] = DROPPED
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # aiohttp stops handling this request quietly
