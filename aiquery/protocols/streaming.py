"""Streamed chat answers as server-sent events, protocol-neutral.

A streamed answer is the same `ChatResult` a non-streamed request gets, sent in pieces.
Each protocol's codec (`encode_chat_stream` in `openai`, `encode_stream` in `responses`,
`anthropic` and `gemini`) turns a result and its pieces into a `StreamBody`: the events
that open the answer, one group of events per piece of text, and the events that close it
(finish reason, usage, an end marker). `frame` writes one event in the SSE wire format and
`parse` reads it back; `pieces` cuts a text the way the emulator streams it.

    event: content_block_delta                       <- Event.name (typed streams only)
    data: {"type":"content_block_delta",...}         <- Event.data, one JSON line
    <blank line>
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiquery.protocols.common import ChatResult, Streaming

# OpenAI-shaped streams (chat completions, Databricks invocations) end with this data line.
DONE = "[DONE]"
CONTENT_TYPE = "text/event-stream"


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: its data (a JSON value, or a bare string like `[DONE]`) and,
    in typed streams (Anthropic, the Responses API), its name."""

    data: Any
    name: str | None = None


@dataclass(frozen=True, slots=True)
class StreamBody:
    opening: tuple[Event, ...]  # sent as soon as the answer starts
    pieces: tuple[tuple[Event, ...], ...]  # one group per piece of text, in order
    closing: tuple[Event, ...]  # finish reason, usage, end marker

    def events(self) -> list[Event]:
        return [*self.opening, *(e for group in self.pieces for e in group), *self.closing]


# A protocol's stream encoder: (the answer, its pieces, what the caller asked for) → events.
StreamEncoder = Callable[[ChatResult, Sequence[str], Streaming], StreamBody]

_PIECE = re.compile(r"\S+\s*|\s+")


def pieces(text: str) -> list[str]:
    """`text` in the pieces a stream sends: each word with the whitespace after it (and any
    leading whitespace alone); joined, they are `text` exactly."""
    return _PIECE.findall(text)


def data_text(event: Event) -> str:
    """The event's data as sent: compact JSON, or the bare string (`[DONE]`) as it is."""
    return event.data if isinstance(event.data, str) else _compact(event.data)


def frame(event: Event) -> bytes:
    """The event in the SSE wire format."""
    head = f"event: {event.name}\n" if event.name else ""
    return f"{head}data: {data_text(event)}\n\n".encode()


def parse(text: str) -> list[Event]:
    """The events of an SSE text (one `data:` line per event, as `frame` writes them);
    `[DONE]` stays a string, every other data line is JSON."""
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        name, data = None, None
        for line in block.splitlines():
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data = value
        if data is not None:
            events.append(Event(data if data == DONE else json.loads(data), name))
    return events


def _compact(value: Any) -> str:
    # ASCII escapes keep a lone surrogate a client echoed (valid JSON, no UTF-8) encodable.
    return json.dumps(value, separators=(",", ":"))
