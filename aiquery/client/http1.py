"""The hot path's HTTP client: HTTP/1.1 keep-alive POSTs on asyncio's own protocol layer.

Every row of a job goes through `send`, 20,000 requests or more per task, so its CPU per
request is the engine's floor. aiohttp's client spent ~0.2 ms of CPU per 2 KB chat request
on this class of machine; this one spends ~0.1 (README, "Why aiquery speaks HTTP/1.1
itself"). It speaks what model endpoints answer with: HTTP/1.1 and 1.0, Content-Length,
chunked and close-delimited bodies, gzip and deflate, 1xx answers skipped, TLS with the
system's trust store (SSL_CERT_FILE and SSL_CERT_DIR are honoured). It does not follow
redirects (a POST is not re-sent elsewhere: the 3xx is the answer) and uses no proxy, as the
aiohttp session before it did not.

Failures map to the transport's two errors, named by kind and never by URL:
`TransportTimeoutError` when connecting, sending and reading took longer than the request's
timeout, `TransportConnectionError` otherwise (refused, reset, closed before the whole
answer, TLS refused, an answer that is not HTTP).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiquery.client.connection import Connection, Origin, ResponseError
from aiquery.client.transport import (
    Request,
    Response,
    TransportConnectionError,
    TransportTimeoutError,
)

IDLE_S = 15.0  # a connection idle longer is closed, not reused (servers drop them after 5-60 s)
_DEFAULTS = {"accept": "*/*", "accept-encoding": "gzip, deflate"}


@dataclass(frozen=True, slots=True)
class Target:
    origin: Origin
    start: bytes  # "POST <path> HTTP/1.1\r\nHost: <host>\r\n"


def target(url: str) -> Target:
    """Where a request to `url` goes. Errors name the problem, never the URL (it may hold a key)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("an endpoint URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "an endpoint URL holds credentials (user:password@), which are not sent: "
            "give the endpoint a token instead"
        )
    host = parts.hostname
    if not host:
        raise ValueError("an endpoint URL has no host")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    authority = f"[{host}]" if ":" in host else host
    if port != default:
        authority += f":{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    start = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n".encode()
    return Target(Origin(parts.scheme, host, port), start)


def request_head(start: bytes, headers: Mapping[str, str], length: int) -> bytes:
    names = {name.lower() for name in headers}
    extra = {name: value for name, value in _DEFAULTS.items() if name not in names}
    lines = "".join(f"{name}: {value}\r\n" for name, value in {**headers, **extra}.items())
    count = len(headers) + len(extra)
    if lines.count("\n") != count or lines.count("\r") != count or "\0" in lines:
        bad = next(n for n, v in headers.items() if any(c in n + v for c in "\r\n\0"))
        raise ValueError(
            f"request header {bad.splitlines()[0]!r} holds a line break or NUL: check the "
            "endpoint's token and headers"
        )
    return start + lines.encode() + b"Content-Length: %d\r\n\r\n" % length


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The system's trust store, verifying hostnames; once per process."""
    return ssl.create_default_context()


class Http1Transport:
    """POSTs over keep-alive HTTP/1.1 connections, at most `max_connections` of them open."""

    def __init__(self, max_connections: int, *, tls: ssl.SSLContext | None = None) -> None:
        self._limit = max_connections
        self._slots = asyncio.Semaphore(max_connections)  # requests in flight
        self._tls = tls
        self._idle: dict[Origin, deque[Connection]] = {}
        self._idle_count = 0
        self._busy = 0
        self._targets: dict[str, Target] = {}
        self._closed = False
        self.opened = 0  # connections opened so far

    async def send(self, request: Request) -> Response:
        found = self._targets.get(request.url)
        if found is None:
            found = self._targets[request.url] = target(request.url)
        head = request_head(found.start, request.headers, len(request.body))
        started = time.monotonic()
        async with self._slots:
            self._busy += 1  # in use or being opened
            try:
                async with asyncio.timeout(request.timeout_s):
                    connection = await self._connection(found.origin)
                    try:
                        return await connection.exchange(head + request.body, started)
                    finally:
                        self._release(connection)
            except TimeoutError:  # an OSError too: first
                raise TransportTimeoutError from None
            except (OSError, ResponseError) as e:
                kind = str(e) if isinstance(e, ResponseError) else type(e).__name__
                raise TransportConnectionError(kind) from None
            finally:
                self._busy -= 1

    @property
    def idle(self) -> int:
        """Pooled connections still open, ready for the next request."""
        return sum(not c.closed for pool in self._idle.values() for c in pool)

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    async def _connection(self, origin: Origin) -> Connection:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be stale
            self._idle_count -= 1
            if not connection.closed and now - connection.idle_since < IDLE_S:
                return connection
            connection.close()
        if self._busy + self._idle_count > self._limit:
            self._evict_one()
        tls = (self._tls or default_tls()) if origin.scheme == "https" else None
        loop = asyncio.get_running_loop()
        transport, connection = await loop.create_connection(
            lambda: Connection(origin),
            origin.host,
            origin.port,
            ssl=tls,
            server_hostname=origin.host if tls else None,
        )
        connection.transport = transport  # uvloop may call connection_made after returning
        self.opened += 1
        return connection

    def _release(self, connection: Connection) -> None:
        if self._closed or not connection.reusable:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.origin, deque()).append(connection)
        self._idle_count += 1

    def _evict_one(self) -> None:
        """Close the oldest idle connection (of any origin) to stay within the limit."""
        for idle in self._idle.values():
            if idle:
                idle.popleft().close()
                self._idle_count -= 1
                return
