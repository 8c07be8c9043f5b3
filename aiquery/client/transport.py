"""The client's boundary with the network: send one request, get its status, headers and body.

`EndpointClient` takes a `Transport`, so everything above it (retries, both retry budgets,
the breaker, `Retry-After`, malformed bodies, redaction) is tested with a `MockTransport`
and a fake sleep: no sockets, no Spark. Production uses `aiquery.client.http1.Http1Transport`
(README, "Why aiquery speaks HTTP/1.1 itself"). A transport maps its failures once, into
`TransportTimeoutError` and `TransportConnectionError`; nothing else escapes it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    headers: Mapping[str, str]
    body: bytes
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    ttfb_s: float | None = None  # until the response headers arrived


class TransportTimeoutError(Exception):
    """No answer within the request's timeout."""


class TransportConnectionError(Exception):
    """No HTTP answer: the connection failed, was refused or was closed. The message is
    the failure's kind (e.g. "ServerDisconnectedError"), never a URL with credentials."""


class Transport(Protocol):
    async def send(self, request: Request) -> Response: ...

    async def close(self) -> None: ...


Handler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport:
    """A transport that answers with `handler(request)` (plain or async), for tests.

    The handler may raise `TransportTimeoutError` or `TransportConnectionError` to play a network fault.
    Every request it saw is kept in `requests`.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = False

    async def send(self, request: Request) -> Response:
        self.requests.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        assert isinstance(answer, Response)
        return answer

    async def close(self) -> None:
        self.closed = True
