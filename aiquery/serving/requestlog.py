"""What the emulator really received: per-endpoint counters and a bounded log of recent requests.

Tests compare this with what clients recorded (usage rows), so every request that
reached a model route is logged exactly once, whatever its outcome.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

# Outcomes that are not an HTTP status: the emulator never answered.
HUNG = "hung"
DROPPED = "dropped"
CLIENT_CLOSED = "client_closed"  # the client went away (or the server shut down) first


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    request_id: str
    time: float
    route: str
    endpoint: str | None  # None when the request named no known endpoint
    status: int | str  # HTTP status, or HUNG / DROPPED
    input_tokens: int
    output_tokens: int
    items: int  # rows served: embedding inputs, completion prompts, custom records; 1 for chat
    request_tags: dict[str, str] | None
    user_agent: str | None
    fault: str | None = None  # the injected fault, if any
    streamed: bool = False  # answered as server-sent events
    first_byte_ms: float | None = None  # of a streamed answer: arrival to its first event


@dataclass(slots=True)
class EndpointStats:
    requests: int = 0
    items: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    streamed: int = 0
    first_byte_ms: float = 0.0  # summed over the streamed requests that sent a first event
    first_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        mean = self.first_byte_ms / self.first_bytes if self.first_bytes else None
        return {
            "requests": self.requests,
            "items": self.items,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "statuses": dict(self.statuses),
            "streamed": self.streamed,
            "mean_first_byte_ms": None if mean is None else round(mean, 1),
        }


class RequestLog:
    def __init__(self, max_entries: int = 200_000) -> None:
        self.entries: deque[LoggedRequest] = deque(maxlen=max_entries)
        self.stats: dict[str, EndpointStats] = {}
        self.started = time.time()

    def add(self, entry: LoggedRequest) -> None:
        if entry.time < self.started:
            # It arrived before a reset and is logged as it ends (a handler its client left
            # while it waited for the model): the log is what arrived since the reset.
            return
        self.entries.append(entry)
        stats = self.stats.setdefault(entry.endpoint or "<unknown>", EndpointStats())
        stats.requests += 1
        stats.items += entry.items
        stats.input_tokens += entry.input_tokens
        stats.output_tokens += entry.output_tokens
        stats.statuses[str(entry.status)] += 1
        stats.streamed += entry.streamed
        if entry.first_byte_ms is not None:
            stats.first_byte_ms += entry.first_byte_ms
            stats.first_bytes += 1

    def reset(self) -> None:
        self.entries.clear()
        self.stats.clear()
        self.started = time.time()

    def snapshot(
        self, endpoint: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        rows = [e for e in self.entries if endpoint is None or e.endpoint == endpoint]
        if limit is not None:
            rows = rows[-limit:] if limit > 0 else []
        return [asdict(e) for e in rows]

    def summary(self) -> dict[str, Any]:
        return {name: s.as_dict() for name, s in sorted(self.stats.items())}
