"""One HTTP/1.1 connection of the hot path's client: writes a request, parses its response
as the bytes arrive (status line, headers, then a Content-Length, chunked or close-delimited
body, gzip or deflate decoded), and says whether it can carry the next request.

`aiquery.client.http1.Http1Transport` pools these; they know nothing of URLs or timeouts.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import cast

from aiquery.client.transport import Response

MAX_HEAD_BYTES = 64 * 1024  # a response's status line and headers; a chunk-size line too


class Headers(Mapping[str, str]):
    """A response's headers, looked up in any case; a repeated header's values joined by ", "."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str]) -> None:
        self._items = items  # names lowercased

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class ResponseError(Exception):
    """No whole HTTP/1.x response came back; the message is the kind of fault."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int


# Parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _IDLE = range(8)


class Connection(asyncio.Protocol):
    """One connection: writes a request, parses its response as the bytes arrive."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._state = _IDLE
        self._pending = bytearray()  # an incomplete head or chunk line
        self._parts: list[bytes] = []
        self._remaining = 0
        self._future: asyncio.Future[Response] | None = None
        self._started = 0.0
        self._ttfb: float | None = None
        self._status = 0
        self._headers: dict[str, str] = {}
        self._keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    async def exchange(self, data: bytes, started: float) -> Response:
        assert self.transport is not None
        if self.closed:  # lost since it was pooled or opened: a write would go nowhere
            raise ResponseError("ServerDisconnectedError")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Response] = loop.create_future()
        self._future = future
        self._started, self._ttfb = started, None
        self._state, self.reusable = _HEAD, False
        self.transport.write(data)
        try:
            return await future
        except BaseException:  # cancelled, timed out, or the server failed: never reused
            self.close()
            raise

    def close(self) -> None:
        self.closed, self.reusable = True, False
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._future is None or self._future.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._feed(data)
        except ResponseError as e:
            self._future.set_exception(e)
            self.close()

    def eof_received(self) -> bool:
        return False  # close; connection_lost ends a close-delimited body

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed, self.reusable = True, False
        future = self._future
        if future is None or future.done():
            return
        if self._state == _UNTIL_CLOSE:
            self._complete()
        else:
            future.set_exception(ResponseError("ServerDisconnectedError"))

    def _feed(self, data: bytes) -> None:
        if self._pending:
            data = bytes(self._pending) + data
            self._pending.clear()
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _HEAD:
                stop = data.find(b"\r\n\r\n", pos)
                if stop < 0:
                    break
                if self._ttfb is None:
                    self._ttfb = time.monotonic() - self._started
                self._head(data[pos:stop])
                pos = stop + 4
            elif state in (_LENGTH, _CHUNK_DATA):
                take = min(self._remaining, end - pos)
                self._parts.append(data if take == end else data[pos : pos + take])  # no copy
                pos += take
                self._remaining -= take
                if not self._remaining:
                    if state == _LENGTH:
                        self._complete()
                    else:
                        self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if end - pos < 2:
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise ResponseError("BadChunkedBody")
                pos += 2
                self._state = _CHUNK_SIZE
            elif state in (_CHUNK_SIZE, _TRAILER):
                stop = data.find(b"\r\n", pos)
                if stop < 0:
                    break
                line, pos = data[pos:stop], stop + 2
                if state == _TRAILER:
                    if not line:
                        self._complete()
                elif (size := _chunk_size(line)) == 0:
                    self._state = _TRAILER
                else:
                    self._state, self._remaining = _CHUNK_DATA, size
            elif state == _UNTIL_CLOSE:
                self._parts.append(data[pos:] if pos else data)
                pos = end
            else:  # more bytes after a whole response: out of step
                self.reusable = False
                pos = end
        if pos < end:
            if end - pos > MAX_HEAD_BYTES:
                raise ResponseError("ResponseHeadersTooLarge")
            self._pending += data[pos:]

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ResponseError("BadStatusLine")
        status = int(code)
        if 100 <= status < 200:
            if status == 101:
                raise ResponseError("UnexpectedUpgrade")
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or b" " in name:
                raise ResponseError("BadHeaderLine")
            key = name.decode("latin-1").lower()
            text = value.strip(b" \t").decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self._status, self._headers, self._parts = status, headers, []
        connection = headers.get("connection", "").lower()
        self._keep_alive = (
            "close" not in connection if version == b"HTTP/1.1" else "keep-alive" in connection
        )
        coding = headers.get("transfer-encoding", "").lower()
        if coding:
            if coding.rsplit(",", 1)[-1].strip() == "chunked":
                self._state = _CHUNK_SIZE
            else:  # any other coding: the body ends when the server closes
                self._state = _UNTIL_CLOSE
        elif status in (204, 304):
            self._complete()
        elif (length := headers.get("content-length")) is not None:
            values = {v.strip() for v in length.split(",")}
            if len(values) != 1 or not (only := values.pop()).isdigit():
                raise ResponseError("BadContentLength")
            self._remaining = int(only)
            self._state = _LENGTH
            if not self._remaining:
                self._complete()
        else:
            self._state = _UNTIL_CLOSE

    def _complete(self) -> None:
        parts, self._parts, self._state = self._parts, [], _IDLE
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        future = self._future
        assert future is not None
        try:
            body = _decoded(body, self._headers.get("content-encoding", ""))
        except ResponseError as e:
            future.set_exception(e)
            return
        self.reusable = self._keep_alive and not self.closed  # close-delimited: closed
        future.set_result(Response(self._status, Headers(self._headers), body, self._ttfb))


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
        raise ResponseError("BadChunkedBody")
    return int(digits, 16)


def _decoded(body: bytes, coding: str) -> bytes:
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return body
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send it
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error:
        raise ResponseError("BadContentEncoding") from None
    raise ResponseError(f"UnsupportedContentEncoding {coding[:20]}")
