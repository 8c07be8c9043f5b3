"""The hot path's HTTP/1.1 client against real loopback servers that answer as scripted."""

from __future__ import annotations

import asyncio
import gzip
import re
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme

from aiquery.client.connection import Connection, Origin
from aiquery.client.http1 import Http1Transport, target
from aiquery.client.transport import (
    Request,
    Response,
    TransportConnectionError,
    TransportTimeoutError,
)

HANG = b"<hang>"  # the server reads the request and never answers


def answer(body: bytes = b'{"ok": true}', status: str = "200 OK", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in chunks:
        out += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n" + trailer + b"\r\n"


@dataclass
class Server:
    """Answers the n-th request with `answers[n]`: bytes, or pieces written 20 ms apart, and
    closes after it when `close_after` holds n."""

    answers: list[Any]
    close_after: set[int] = field(default_factory=set)
    idle_close_s: float | None = None  # close a connection idle this long
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    hold_s: float = 0.0  # wait this long before answering
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close_s)
                except (asyncio.IncompleteReadError, TimeoutError):
                    return
                found = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                body = await reader.readexactly(int(found[1]) if found else 0)
                n = len(self.requests)
                self.requests.append((head, body))
                await asyncio.sleep(self.hold_s)
                reply = self.answers[n % len(self.answers)]
                if reply == HANG:
                    await asyncio.sleep(3600)
                for piece in reply if isinstance(reply, list) else [reply]:
                    writer.write(piece)
                    await writer.drain()
                    if isinstance(reply, list):
                        await asyncio.sleep(0.02)
                if n in self.close_after:
                    return
        except ConnectionError:
            return
        finally:
            self.open_now -= 1
            writer.close()


def run(server: Server, body: Callable[[Server], Awaitable[Any]], **tls: Any) -> Any:
    async def main() -> Any:
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, **tls)
        port = listening.sockets[0].getsockname()[1]
        server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1/x?key=1"
        async with listening:
            return await body(server)

    return asyncio.run(main())


def post(url: str, body: bytes = b'{"q": 1}', timeout_s: float = 5.0) -> Request:
    return Request(url, {"Authorization": "Bearer dapi-x", "X-Tag": "t"}, body, timeout_s)


def test_one_keep_alive_connection_serves_every_request_with_exact_bytes() -> None:
    async def body(server: Server) -> list[Response]:
        transport = Http1Transport(8)
        got = [await transport.send(post(server.url, b"x" * n)) for n in (1, 10, 100_000)]
        await transport.close()
        return got

    server = Server([answer(b"a" * 70_000, "200 OK", "Retry-After: 3", "X-Id: 1", "x-id: 2")])
    responses = run(server, body)
    assert server.connections == 1
    assert [r.status for r in responses] == [200, 200, 200]
    assert all(r.body == b"a" * 70_000 for r in responses)
    assert responses[0].headers["retry-after"] == "3"
    assert responses[0].headers.get("X-ID") == "1, 2"
    assert responses[0].ttfb_s is not None and responses[0].ttfb_s >= 0
    head, sent = server.requests[2]
    assert sent == b"x" * 100_000
    assert head.startswith(b"POST /v1/x?key=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Authorization: Bearer dapi-x\r\n" in head and b"Content-Length: 100000\r\n" in head


def test_chunked_bodies_with_extensions_and_trailers_arrive_whole() -> None:
    whole = chunked(b"hello ", b"w" * 5000, trailer=b"X-Checksum: 1\r\n")
    pieces = [whole[:7], whole[7:40], whole[40:41], whole[41:]]

    async def body(server: Server) -> list[bytes]:
        transport = Http1Transport(2)
        got = [(await transport.send(post(server.url))).body for _ in range(2)]
        await transport.close()
        return got

    server = Server([pieces, whole])
    assert run(server, body) == [b"hello " + b"w" * 5000] * 2
    assert server.connections == 1


def test_a_response_fed_one_byte_at_a_time_parses_the_same() -> None:
    class Wire(asyncio.Transport):
        def write(self, data: Any) -> None:
            pass

        def abort(self) -> None:
            pass

    async def main() -> list[Response]:
        out = []
        for raw in (
            chunked(b"abc", b"defg"),
            answer(b"xyz", "404 Not Found"),
            b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"after 100"),
        ):
            connection = Connection(Origin("http", "h", 80))
            connection.connection_made(Wire())
            waiting = asyncio.ensure_future(connection.exchange(b"", 0.0))
            await asyncio.sleep(0)
            for i in range(len(raw)):
                connection.data_received(raw[i : i + 1])
            out.append(await waiting)
            assert connection.reusable
        return out

    first, second, third = asyncio.run(main())
    assert (first.status, first.body) == (200, b"abcdefg")
    assert (second.status, second.body) == (404, b"xyz")
    assert (third.status, third.body) == (200, b"after 100")


@pytest.mark.parametrize(
    "coding, encode",
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send
    ],
)
def test_compressed_bodies_are_decoded(coding: str, encode: Callable[[bytes], bytes]) -> None:
    text = b'{"choices": []}' * 100

    async def body(server: Server) -> bytes:
        transport = Http1Transport(1)
        response = await transport.send(post(server.url))
        await transport.close()
        return response.body

    assert (
        run(Server([answer(encode(text), "200 OK", f"Content-Encoding: {coding}")]), body) == text
    )


@pytest.mark.parametrize(
    "reply, kind",
    [
        (answer(b"x", "200 OK", "Content-Encoding: br"), "UnsupportedContentEncoding br"),
        (answer(b"not gzip", "200 OK", "Content-Encoding: gzip"), "BadContentEncoding"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "BadStatusLine"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "BadHeaderLine"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "BadContentLength"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "BadChunkedBody"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", "ServerDisconnectedError"),
        (b"", "ServerDisconnectedError"),
    ],
)
def test_what_is_not_a_whole_response_is_a_connection_error_named_by_kind(
    reply: bytes, kind: str
) -> None:
    async def body(server: Server) -> str:
        transport = Http1Transport(1)
        with pytest.raises(TransportConnectionError) as caught:
            await transport.send(post(server.url))
        await transport.close()
        return str(caught.value)

    assert run(Server([reply], close_after={0}), body) == kind


def test_close_delimited_and_connection_close_answers_are_not_reused() -> None:
    http10 = b"HTTP/1.0 200 OK\r\n\r\nuntil the end"
    closing = answer(b"bye", "200 OK", "Connection: close")

    async def body(server: Server) -> list[bytes]:
        transport = Http1Transport(4)
        got = [(await transport.send(post(server.url))).body for _ in range(3)]
        await transport.close()
        return got

    server = Server([http10, closing, answer(b"fresh")], close_after={0, 1})
    assert run(server, body) == [b"until the end", b"bye", b"fresh"]
    assert server.connections == 3


def test_silence_is_a_timeout_and_its_connection_is_dropped() -> None:
    async def body(server: Server) -> tuple[int, Response]:
        transport = Http1Transport(1)
        with pytest.raises(TransportTimeoutError):
            await transport.send(post(server.url, timeout_s=0.3))
        after = await transport.send(post(server.url))
        await transport.close()
        return transport.opened, after

    opened, after = run(Server([HANG, answer(b"second")]), body)
    assert opened == 2 and after.body == b"second"


def test_a_connection_the_server_dropped_while_idle_is_not_reused() -> None:
    async def body(server: Server) -> tuple[int, list[bytes]]:
        transport = Http1Transport(1)
        first = await transport.send(post(server.url))
        assert transport.idle == 1
        deadline = time.monotonic() + 10
        while transport.idle and time.monotonic() < deadline:  # the server closes it at 0.1 s
            await asyncio.sleep(0.01)
        assert transport.idle == 0
        second = await transport.send(post(server.url))
        await transport.close()
        return transport.opened, [first.body, second.body]

    opened, bodies = run(Server([answer(b"one"), answer(b"two")], idle_close_s=0.1), body)
    assert opened == 2 and bodies == [b"one", b"two"]


def test_requests_beyond_the_limit_wait_for_a_connection() -> None:
    async def body(server: Server) -> list[int]:
        transport = Http1Transport(2)
        got = await asyncio.gather(*(transport.send(post(server.url)) for _ in range(7)))
        await transport.close()
        return [r.status for r in got]

    server = Server([answer()], hold_s=0.05)
    assert run(server, body) == [200] * 7
    assert server.most_open == 2 and server.connections == 2


def test_a_refused_connection_is_named_and_the_url_is_not() -> None:
    async def main() -> str:
        transport = Http1Transport(1)
        with pytest.raises(TransportConnectionError) as caught:
            await transport.send(post("http://127.0.0.1:9/secret-path?key=sk-123"))
        return str(caught.value)

    assert asyncio.run(main()) == "ConnectionRefusedError"


def test_tls_verifies_the_server_against_the_trust_it_is_given() -> None:
    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(served)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)

    async def body(server: Server) -> tuple[bytes, str]:
        trusted = Http1Transport(1, tls=trusting)
        ok = await trusted.send(post(server.url))
        await trusted.close()
        system = Http1Transport(1)  # the system's trust store does not know this CA
        with pytest.raises(TransportConnectionError) as caught:
            await system.send(post(server.url))
        await system.close()
        return ok.body, str(caught.value)

    assert run(Server([answer(b"secure")]), body, ssl=served) == (
        b"secure",
        "SSLCertVerificationError",
    )


def test_targets_and_refusals_name_the_problem_never_the_secret() -> None:
    assert target("http://[::1]:8080/a").start == b"POST /a HTTP/1.1\r\nHost: [::1]:8080\r\n"
    assert target("https://Example.com/a/b?x=1#frag").start == (
        b"POST /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n"
    )
    assert target("https://example.com:443").origin == Origin("https", "example.com", 443)
    with pytest.raises(ValueError, match="credentials") as caught:
        target("https://user:sk-secret@example.com/")
    assert "sk-secret" not in str(caught.value)
    with pytest.raises(ValueError, match="http:// or https://"):
        target("ftp://example.com/")

    async def main() -> None:
        request = Request("http://127.0.0.1:9/", {"Authorization": "Bearer a\r\nX: b"}, b"", 1)
        await Http1Transport(1).send(request)

    with pytest.raises(ValueError, match="'Authorization' holds a line break") as caught:
        asyncio.run(main())
    assert "Bearer" not in str(caught.value)
